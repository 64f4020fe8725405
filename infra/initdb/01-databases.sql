-- nflab, MLflow and Optuna each keep their own database (their Alembic version tables would clash).
CREATE DATABASE nflab;
CREATE DATABASE mlflow;
CREATE DATABASE optuna;
