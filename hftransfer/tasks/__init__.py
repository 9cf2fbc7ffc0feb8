"""Built-in tasks, registered here in one place by explicit imports."""

from hftransfer.registry import register_task
from hftransfer.tasks import text_classification

register_task(text_classification.TASK)
