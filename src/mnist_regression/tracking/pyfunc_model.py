"""The MLflow Model of a trained run, as MLflow's "models from code" wants it: this
file is logged with the model and defines it; the weights come as an artifact.

Input: float32 pixels in [0, 1], shape (n, 784). Output: the predicted digit (2 or
3 for the binary model of ``data.digits`` [2, 3]; 0-9 for softmax), the class of
``LinearModel.predict`` mapped through the saved ``classes``.
"""

import numpy as np
from mlflow.models import set_model
from mlflow.pyfunc import PythonModel


class LinearClassifier(PythonModel):
    def load_context(self, context):
        with np.load(context.artifacts["weights"]) as saved:
            self.weights, self.bias = saved["weights"], saved["bias"]
            self.classes, self.factor = saved["classes"], saved["factor"]

    def predict(self, context, model_input: np.ndarray, params=None) -> np.ndarray:
        pixels = np.asarray(model_input, dtype=np.float32) * self.factor
        z = pixels @ self.weights + self.bias
        if z.shape[1] == 1:  # logistic regression
            return self.classes[(z[:, 0] > 0).astype(np.int64)]
        return self.classes[z.argmax(axis=1)]


set_model(LinearClassifier())
