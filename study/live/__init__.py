"""The live study dashboard (`python study/dashboard.py EXPERIMENT`): reading an experiment folder while a study
writes it, the interactive charts, the pages and the token-protected server."""
