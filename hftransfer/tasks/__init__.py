"""Built-in tasks, registered here in one place by explicit imports."""

from hftransfer.registry import register_task
from hftransfer.tasks import image_classification, text_classification

register_task(text_classification.TASK)
register_task(image_classification.TASK)
