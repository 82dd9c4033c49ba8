"""The service's WSGI app (`wsgi:app`) with orjson writing its JSON answers through Flask's
JSON provider: the variant `BENCH_JSON=orjson make bench` serves (bench/README.md, "Server
and JSON, measured"). Not the production app: orjson is not in requirements.txt.

Request bodies are still parsed by the app's strict loads (app/core/inputs.py), so only
the answers' serialisation changes. Output differs from Flask's in bytes only: non-ASCII
text is written as UTF-8 instead of \\u escapes; dates and dataclasses go through Flask's
own `default`, so they print as before.
"""

from __future__ import annotations

from typing import Any

import orjson
from flask import Response

from app.core.inputs import StrictJSONProvider
from wsgi import app

# Dates and dataclasses to Flask's `default` (an HTTP date, asdict), as json.dumps does.
OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
OPTIONS |= orjson.OPT_NON_STR_KEYS


class OrjsonProvider(StrictJSONProvider):
    """Answers dumped by orjson, compact, with the newline Flask's answers end with."""

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        return orjson.dumps(obj, default=self.default, option=OPTIONS).decode()

    def response(self, *args: Any, **kwargs: Any) -> Response:
        obj = self._prepare_response_obj(args, kwargs)
        body = orjson.dumps(obj, default=self.default, option=OPTIONS | orjson.OPT_APPEND_NEWLINE)
        return self._app.response_class(body, mimetype=self.mimetype)


app.json = OrjsonProvider(app)
