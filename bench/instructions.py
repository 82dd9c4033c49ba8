"""Instructions per request, in-process, for callgrind (bench/README.md, "Second pass").

Serves N requests of PATH through the WSGI app `wsgi.py` builds (as gunicorn imports it),
after 50 warm-up ones, against the bench database `make bench` seeded. Run it twice under
valgrind with two values of N; the difference of the two totals divided by the difference
of N is the instructions one request costs in this process (PostgreSQL's side is not
counted). Instruction counts do not move with the machine's load:

    PYTHONHASHSEED=0 valgrind --tool=callgrind --callgrind-out-file=/dev/null \\
        .venv/bin/python bench/instructions.py 100 /user/profile   # then 400
"""

from __future__ import annotations

import io
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import seed  # noqa: E402

ADMIN_URL = os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")


def main(count: int, path: str) -> None:
    state = seed.in_process(ADMIN_URL, REDIS_URL)
    os.chdir(seed.ROOT)
    from werkzeug.test import EnvironBuilder

    import wsgi

    app = wsgi.app
    login, tenant = seed.password_login(state)
    signed = app.test_client().post(
        "/oauth/token", data=login, headers=tenant, content_type="application/json"
    )
    bearer = {"Authorization": f"Bearer {signed.get_json()['access_token']}"}
    environ = EnvironBuilder(path=path, headers=bearer).get_environ()
    for _ in range(50 + count):
        request = dict(environ)
        request["wsgi.input"] = io.BytesIO(b"")
        b"".join(app(request, lambda status, *_: None))


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else "/user/profile")
