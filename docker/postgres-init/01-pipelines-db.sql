-- Run once by the postgres image on an empty data volume (files in /docker-entrypoint-initdb.d), as
-- POSTGRES_USER, after it has created Airflow's metadata database (POSTGRES_DB=airflow).
-- The pipelines keep their own tables in a second database on the same server; `python -m pipelines migrate`
-- (run by the airflow-init service) creates the schema in it.
CREATE DATABASE pipelines;
