"""`manage.py localmodel train NAME FILE.jsonl | list`: the offline local models."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from workflows import services
from workflows.ai.classifier import load_jsonl
from workflows.errors import InvalidInput
from workflows.models import LocalModel


class Command(BaseCommand):
    help = "Train and list offline local models (local:<name>[@<version>] in definitions)."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        train = sub.add_parser("train", help="train a new version from labelled JSONL")
        train.add_argument("name")
        train.add_argument("file", help='JSONL, one {"text": ..., "label": ...} per line')
        train.add_argument("--seed", type=int, default=0)
        sub.add_parser("list", help="list models and their held-out metrics")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["action"] == "train":
            self._train(options["name"], options["file"], options["seed"])
        else:
            for model in LocalModel.objects.order_by("name", "-version"):
                metrics = model.metrics
                self.stdout.write(
                    f"{model} labels={','.join(model.labels)} examples={len(model.examples)} "
                    f"accuracy={metrics.get('accuracy', 0):.3f} ece={metrics.get('ece', 0):.3f}"
                )

    def _train(self, name: str, file: str, seed: int) -> None:
        try:
            examples = load_jsonl(file)
        except (OSError, ValueError) as exc:
            raise CommandError(str(exc)) from None
        try:
            model = services.local_model_train(
                name=name,
                examples=examples,
                seed=seed,
                actor=services.Actor.system("cli"),
                source={"file": Path(file).name},
            )
        except InvalidInput as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(
            f"{model}: {len(examples)} examples, held-out accuracy "
            f"{model.metrics['accuracy']:.3f}, ECE {model.metrics['ece']:.3f}"
        )
