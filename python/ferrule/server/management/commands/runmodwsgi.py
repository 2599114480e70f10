"""`manage.py runmodwsgi`: mod_wsgi's name for `runferrule`, so that deploy scripts written
for mod_wsgi keep working."""

from ferrule.server.management.commands.runferrule import Command  # noqa: F401
