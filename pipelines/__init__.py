"""Airflow 3 batch platform for user-behaviour machine learning: all logic, runnable without Airflow."""
