from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from serving_helpers import ScoringServer  # noqa: E402


@pytest.fixture
def serve():
    """Start scoring servers for a test; all of them are stopped afterwards."""
    started: list[ScoringServer] = []

    def start(app_root, script="score.py", ready=True, **kw) -> ScoringServer:
        server = ScoringServer(app_root, script, **kw)
        started.append(server)
        if ready:
            server.wait_ready()
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def sklearn_mnist(tmp_path_factory):
    """The seed's model: a LogisticRegression over 10 features, pickled with joblib, and its training data."""
    import joblib
    from sklearn.datasets import make_classification
    from sklearn.linear_model import LogisticRegression

    X, y = make_classification(n_samples=300, n_features=10, n_informative=6, n_classes=3, random_state=0)
    model = LogisticRegression(max_iter=500).fit(X, y)
    path = tmp_path_factory.mktemp("model") / "sklearn_mnist_model.pkl"
    joblib.dump(model, path)
    return path, model
