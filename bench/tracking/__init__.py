"""Runs sent to a tracking tool: MLflow (bench mlflow, bench run --track mlflow).

mlflow.py  one MLflow run per run, a nested run per trial, sent again only for what is new
live.py    a run sent as it goes (bench run --track mlflow): each trial as it ends, the rest at the end"""
