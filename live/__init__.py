"""Live traffic to browsers: the one contract between what publishes events
(web actions, the generation worker, sign-out) and what delivers them (the
chat consumer). See live/publish.py."""
