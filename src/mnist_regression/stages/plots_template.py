"""DVC stage ``plots_template``: an HTML template for ``dvc plots show`` that works
offline.

DVC's default page loads vega, vega-lite and vega-embed from a CDN and renders
blank without the internet. This stage fetches the same versions from the npm
registry and writes a page template with the scripts inline; ``.dvc/config``
points ``plots.html_template`` at it.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from ..common.cli import run_stage
from ..common.config import load_params
from ..common.errors import UserError
from ..common.io import atomic_write
from ..data.npm import NpmError, extract, npm_pack

# The versions DVC's own renderer asks the CDN for, and their browser bundles.
SCRIPTS = {
    "vega@5.20.2": "package/build/vega.min.js",
    "vega-lite@5.2.0": "package/build/vega-lite.min.js",
    "vega-embed@6.18.2": "package/build/vega-embed.min.js",
}
PAGE = """<!DOCTYPE html>
<html>
<head>
    {{refresh_tag}}
    <title>DVC Plot</title>
    {scripts}
    <style>
        table {{ border-spacing: 15px; }}
    </style>
</head>
<body>
    {{plot_divs}}
</body>
</html>
"""


def inline_scripts(workdir: Path) -> str:
    blocks = []
    for spec, member in SCRIPTS.items():
        tarball = npm_pack(spec, workdir / spec)
        code = extract(tarball, member, workdir / spec).read_text(encoding="utf-8")
        code = code.replace("</script", "<\\/script")
        blocks.append(f'<script type="text/javascript">/* {spec} */\n{code}\n</script>')
    return "\n".join(blocks)


def main(argv: list[str]) -> None:
    params = load_params(overrides=argv)
    target = Path(params.study.reports_dir) / "plots_template.html"
    with tempfile.TemporaryDirectory() as tmp:
        try:
            scripts = inline_scripts(Path(tmp))
        except NpmError as err:
            raise UserError(f"cannot build the offline plots template: {err}") from None
    with atomic_write(target, "w") as handle:
        handle.write(PAGE.format(scripts=scripts))
    print(f"wrote {target}")


if __name__ == "__main__":
    run_stage(main, __doc__)
