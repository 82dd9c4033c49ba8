"""Flask extensions created once and bound in create_app (db lives in core.db; the
flask-smorest Api is built per app in create_app because it keeps the app it documents)."""

from flask_babel import Babel
from flask_migrate import Migrate

migrate = Migrate()
# The hosted pages' and mails' language (app/translations; the locale selector is bound
# in create_app).
babel = Babel()
