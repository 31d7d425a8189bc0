"""`AMLRequest` and `@rawhttp`, as in azureml-contrib-services / azureml-inference-server-http.

`run` decorated with `@rawhttp` receives the HTTP request itself: a Werkzeug request (the
class Flask's request is built on), so `method`, `full_path`, `path`, `args`, `headers`,
`get_data()`, `data`, `json`, `get_json()`, `form` and `files` work as they did in v1.
"""

from werkzeug.wrappers import Request

# v1 keeps this flag module-global: applying the decorator anywhere switches raw mode on.
_rawHttpRequested = False


def rawhttp(func):
    """Ask the server to call `run` with the raw HTTP request (GET and POST alike)."""
    global _rawHttpRequested
    _rawHttpRequested = True
    return func


class AMLRequest(Request):
    """The request object `@rawhttp` scripts receive."""
