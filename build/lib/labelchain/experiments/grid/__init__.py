"""How the results grids run their cells (local processes or Ray trials) and turn run folders into rows."""
