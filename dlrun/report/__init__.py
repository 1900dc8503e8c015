"""The diagnostic report: baselines, diagnosis (pure), rendering to report.json / report.md."""

from dlrun.report.baselines import baselines_for
from dlrun.report.diagnosis import Action, Diagnosis, Finding, diagnose, next_command
from dlrun.report.render import SCHEMA_VERSION  # not render(): dlrun.report.render stays the module

__all__ = ["Action", "Diagnosis", "Finding", "SCHEMA_VERSION", "baselines_for", "diagnose", "next_command"]
