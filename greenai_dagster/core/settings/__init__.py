"""What the user asks for: an experiment's settings (`config`), a sweep of them (`sweep`), and reading the
files they are written in (`user_files`), each validated at the edge."""
