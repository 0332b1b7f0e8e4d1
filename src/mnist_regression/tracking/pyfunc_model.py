"""The MLflow Model of a trained run, as MLflow's "models from code" wants it: this
file is logged with the model and defines it; the weights come as an artifact.

Input: float32 pixels in [0, 1], shape (n, 784). Output: the predicted class, the
same as ``LinearModel.predict`` (logistic: 1 for the first digit of ``data.digits``,
0 for the second; softmax: the digit).
"""

import numpy as np
from mlflow.models import set_model
from mlflow.pyfunc import PythonModel


class LinearClassifier(PythonModel):
    def load_context(self, context):
        with np.load(context.artifacts["weights"]) as saved:
            self.weights, self.bias = saved["weights"], saved["bias"]

    def predict(self, context, model_input: np.ndarray, params=None) -> np.ndarray:
        z = np.asarray(model_input, dtype=np.float32) @ self.weights + self.bias
        if z.shape[1] == 1:  # logistic regression
            return (z[:, 0] > 0).astype(np.int64)
        return z.argmax(axis=1)


set_model(LinearClassifier())
