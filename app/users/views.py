"""The old name of `app/users/read_model.py`, kept only while `app/tokens/bearer.py` (being
changed on another branch) still imports it: delete this file once that import says
`read_model`."""

from app.users.read_model import USER, complete, user_where, view_columns

__all__ = ["USER", "complete", "user_where", "view_columns"]
