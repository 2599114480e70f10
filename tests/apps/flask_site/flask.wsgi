# The Flask application as a WSGI script file, as mod_wsgi users write it.
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))

from app import app as application  # noqa: F401
