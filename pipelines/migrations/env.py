"""Alembic environment: runs revisions on the connection handed over by :func:`pipelines.migrate.upgrade`."""

from alembic import context

from pipelines.migrate import VERSION_TABLE

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=None, version_table=VERSION_TABLE,
                  transactional_ddl=True)
with context.begin_transaction():
    context.run_migrations()
