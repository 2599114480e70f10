"""`manage.py runferrule`: serve this Django project with `ferrule start-server`.

Every start-server option is accepted. The command adds what the settings say: the
application (WSGI_APPLICATION, imported as a module), the project directory as the
working directory, and --url-alias for STATIC_URL/STATIC_ROOT and MEDIA_URL/MEDIA_ROOT.
The project directory comes from BASE_DIR when the settings define it, otherwise from
where the settings module lives (settings written before BASE_DIR existed have none).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

# Options Django's own command line takes; they were handled before we run.
DJANGO_OPTIONS = ("--settings", "--pythonpath")


def project_directory() -> Path:
    base_dir = getattr(settings, "BASE_DIR", None)
    if base_dir:
        return Path(base_dir)
    module_name = settings.SETTINGS_MODULE
    module = sys.modules.get(module_name)
    if module is None or not getattr(module, "__file__", None):
        raise CommandError(f"cannot tell where the settings module {module_name} lives")
    # mysite/settings.py (module mysite.settings) lives one package below the project.
    directory = Path(module.__file__).resolve().parent
    for _ in range(module_name.count(".")):
        directory = directory.parent
    return directory


def entry_point() -> str:
    wsgi_application = getattr(settings, "WSGI_APPLICATION", None)
    if not wsgi_application or "." not in wsgi_application:
        raise CommandError("the settings name no WSGI_APPLICATION (module.callable)")
    module, _, callable_name = wsgi_application.rpartition(".")
    return f"{module}:{callable_name}"


def url_alias(url_setting: str, root_setting: str, stderr) -> list[str]:
    url = getattr(settings, url_setting, None)
    root = getattr(settings, root_setting, None)
    if not url or not root or "://" in str(url):
        return []
    url = str(url)
    if not url.startswith("/"):
        url = "/" + url
    if not Path(root).is_dir():
        stderr.write(
            f"ferrule: warning: {root_setting} '{root}' does not exist, so {url} is not served"
            + (" (run manage.py collectstatic)" if root_setting == "STATIC_ROOT" else "")
            + "\n"
        )
        return []
    return ["--url-alias", url.rstrip("/") or "/", str(root)]


def given(arguments: list[str], option: str) -> bool:
    return any(arg == option or arg.startswith(option + "=") for arg in arguments)


class Command(BaseCommand):
    help = "Serve this project with ferrule start-server; takes every start-server option."

    def run_from_argv(self, argv):
        # argv: manage.py runferrule [options]. Django's parser would refuse options it
        # does not know, so the start-server options are read by ferrule itself.
        arguments = [
            arg
            for index, arg in enumerate(argv[2:])
            if not arg.startswith(DJANGO_OPTIONS)
            and not (index > 0 and argv[2:][index - 1] in DJANGO_OPTIONS)
        ]
        if "-h" in arguments or "--help" in arguments:
            sys.exit(self.print_help(argv[0], argv[1]))
        try:
            sys.exit(self.serve(arguments))
        except CommandError as error:
            self.stderr.write(f"ferrule: error: {error}\n")
            sys.exit(2)

    def serve(self, arguments: list[str]) -> int:
        from ferrule._ferrule import main

        directory = project_directory()
        derived = ["--application-type", "module"]
        if not given(arguments, "--entry-point"):
            derived += ["--entry-point", entry_point()]
        if not given(arguments, "--working-directory") and not given(arguments, "--home"):
            derived += ["--working-directory", str(directory)]
        derived += url_alias("STATIC_URL", "STATIC_ROOT", self.stderr)
        derived += url_alias("MEDIA_URL", "MEDIA_ROOT", self.stderr)
        # The processes that load the project need the settings the command was given.
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", settings.SETTINGS_MODULE)
        return main(["start-server", *derived, *arguments])

    def print_help(self, prog_name: str, subcommand: str) -> int:
        """`manage.py help runferrule` and `manage.py runferrule --help`: what the command
        works out from the settings, then the start-server options it takes."""
        from ferrule._ferrule import main

        name = os.path.basename(prog_name)
        self.stdout.write(
            f"Usage: {name} {subcommand} [start-server options]\n\n"
            f"{self.help}\nFrom the settings: the application (WSGI_APPLICATION, as "
            "--application-type module --entry-point), the working directory (BASE_DIR), "
            "and --url-alias for STATIC_URL and MEDIA_URL. Options given win.\n\n"
        )
        self.stdout.flush()
        return main(["start-server", "--help"])

    def handle(self, *args, **options):
        raise CommandError("run it as: manage.py runferrule [start-server options]")
