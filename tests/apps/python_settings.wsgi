"""Reports how Python is set up in the process that runs it: the locale variables, the
egg cache, a variable an envvars script may export, the switch interval and the warnings
options; /warn raises a DeprecationWarning, which a filter may turn into an error."""

import json
import os
import sys
import warnings


def application(environ, start_response):
    if environ["PATH_INFO"] == "/warn":
        warnings.warn("an old way", DeprecationWarning, stacklevel=1)
    report = {
        "LANG": os.environ.get("LANG"),
        "LC_ALL": os.environ.get("LC_ALL"),
        "PYTHON_EGG_CACHE": os.environ.get("PYTHON_EGG_CACHE"),
        "FROM_ENVVARS": os.environ.get("FROM_ENVVARS"),
        "UNSET_BY_ENVVARS": os.environ.get("UNSET_BY_ENVVARS"),
        "filesystem_encoding": sys.getfilesystemencoding(),
        "switch_interval": sys.getswitchinterval(),
        "warnoptions": sys.warnoptions,
        "process_group": environ["mod_wsgi.process_group"],
        "application_group": environ["mod_wsgi.application_group"],
    }
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps(report).encode("utf-8")]
