"""The Django integration: add "ferrule.server" to INSTALLED_APPS and
`python manage.py runferrule [start-server options]` serves the project with Ferrule.
`runmodwsgi` is the same command under mod_wsgi's name, so deploy scripts written for
mod_wsgi keep working."""
