"""`AMLResponse`, as in azureml-contrib-services / azureml-inference-server-http.

Returned from `run`, it is sent as is: its body, status and headers.
"""

import json

from werkzeug.wrappers import Response


class AMLResponse(Response):
    """An HTTP response built by the scoring script.

    `json_str=True` JSON-encodes `message`; otherwise `message` (str or bytes) is the body
    with Content-Type `text/html; charset=utf-8` unless `response_headers` set another.
    A comma in a header value sends the header once per item, as v1 does.
    """

    default_mimetype = "text/html"  # Flask's default, which v1's AMLResponse inherited (Werkzeug's is text/plain)

    def __init__(self, message, status_code, response_headers={}, json_str=False, run_function_failed=False):  # noqa: B006 - v1's exact signature
        if message is None:
            super().__init__(json.dumps({}), status=status_code, mimetype="application/json")
        elif json_str:
            super().__init__(json.dumps(message), status=status_code, mimetype="application/json")
        else:
            super().__init__(message, status=status_code)
            if "Content-Type" in response_headers:
                self.headers.remove("Content-Type")
        self.headers["x-ms-run-function-failed"] = str(run_function_failed)
        for header, value in response_headers.items():
            for item in str(value).split(","):
                self.headers.add_header(header, item.strip())
