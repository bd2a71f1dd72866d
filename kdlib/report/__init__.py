"""Reading results back: tuning studies, the papers' claims and findings in words, figures, summary tables."""
