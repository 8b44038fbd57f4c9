from django.apps import AppConfig


class DemoModelConfig(AppConfig):
    name = "demo_model"
    verbose_name = "Built-in demo model"
