"""What the database should look like: Oban's core objects and powertools' own tables."""
