"""Every `mlflow` and `dvc` command the README and docs/ show is one the
installed MLflow and DVC accept as written: its subcommands exist and its
options are complete. Each is parsed by the program's own command line parser,
not run; placeholders (ID, <run id>) stand for a value."""

from __future__ import annotations

import re
import shlex

import click
import pytest

from ..conftest import REPO_ROOT

PAGES = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]
PROGRAMS = ("mlflow", "dvc")
FENCE = re.compile(r"```(?:sh|bash|console)\n(.*?)```", re.S)
INLINE = re.compile(r"(?<!`)`((?:mlflow|dvc) [^`]+)`(?!`)")


def shown() -> list[tuple[str, str]]:
    """(page, command) for each command line of a shell block and each inline
    span that starts with a program."""
    found = []
    for page in PAGES:
        text = page.read_text()
        for block in FENCE.findall(text):
            for line in block.replace("\\\n", " ").splitlines():
                line = line.strip().removeprefix("$ ")
                line = re.split(r"\s+#", line, maxsplit=1)[0].strip()
                if line.split(" ", 1)[0] in PROGRAMS:
                    found.append((page.name, line))
        found += [(page.name, span) for span in INLINE.findall(text)]
    return sorted(set(found))


def placeholders(line: str) -> list[str]:
    """The words of a command, each placeholder replaced by a value."""
    line = re.sub(r"<[^>]+>", "x", line)
    return ["1" if re.fullmatch(r"[A-Z][A-Z_]*", w) else w for w in shlex.split(line)]


def parse_mlflow(args: list[str]) -> None:
    """Click's own parsing, down to the subcommand, without running it."""
    from mlflow.cli import cli

    command, name, parent = cli, "mlflow", None
    while True:
        context = command.make_context(name, list(args), parent=parent)
        if not isinstance(command, click.Group):
            return
        rest = [*context._protected_args, *context.args]
        name, command, args = command.resolve_command(context, rest)
        parent = context


def parse_dvc(args: list[str]) -> None:
    from dvc.cli import DvcParserError, parse_args

    try:
        parse_args(args)
    except DvcParserError as err:
        raise click.UsageError(f"DVC's parser refused it ({err})") from None


COMMANDS = shown()


def test_the_docs_show_commands():
    programs = {line.split(" ", 1)[0] for _, line in COMMANDS}
    assert programs == set(PROGRAMS)


@pytest.mark.parametrize(("page", "line"), COMMANDS)
def test_a_documented_command_parses_as_written(page, line):
    program, *args = placeholders(line)
    try:
        {"mlflow": parse_mlflow, "dvc": parse_dvc}[program](args)
    except (click.UsageError, SystemExit) as err:
        pytest.fail(f"{page}: `{line}` is refused: {err}")
