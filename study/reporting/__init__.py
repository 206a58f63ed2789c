"""The study report (study/report.py) and the dashboard's shared figures: loading an experiment folder, HTML helpers,
the overview, the search figures, the real-vs-synthetic figures and the page."""
