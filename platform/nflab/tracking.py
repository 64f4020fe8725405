"""MLflow set-up owned by the control plane: one experiment per campaign, artifacts under the home folder."""

from __future__ import annotations

from nflab.settings import Settings


def ensure_experiment(settings: Settings, name: str) -> str:
    """The id of MLflow experiment ``name``, created with an artifact location under ``$NFLAB_HOME/artifacts``
    when the tracking store is local (a tracking server decides its own artifact store)."""
    import mlflow
    from mlflow.exceptions import MlflowException

    client = mlflow.MlflowClient(tracking_uri=settings.mlflow_tracking_uri)
    existing = client.get_experiment_by_name(name)
    if existing is not None:
        return existing.experiment_id
    location = None
    if not settings.mlflow_tracking_uri.startswith(("http://", "https://", "databricks")):
        folder = settings.mlflow_artifact_root / name.replace("/", "_")
        folder.mkdir(parents=True, exist_ok=True)
        location = folder.resolve().as_uri()
    try:
        return client.create_experiment(name, artifact_location=location)
    except MlflowException:  # created concurrently
        found = client.get_experiment_by_name(name)
        if found is None:
            raise
        return found.experiment_id
