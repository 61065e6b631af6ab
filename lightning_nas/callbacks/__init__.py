"""Lightning callbacks usable in any project: genotype export and logging, weight inheritance, early termination."""
