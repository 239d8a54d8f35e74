"""powertools' alembic migrations, shipped inside the package (script_location
``powertools_core:migrations``); run them with ``powertools install``, never with ``alembic``."""
