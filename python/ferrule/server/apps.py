"""Django's description of the ferrule.server application."""

from django.apps import AppConfig


class FerruleServerConfig(AppConfig):
    name = "ferrule.server"
    label = "ferrule_server"
    verbose_name = "Ferrule server"
