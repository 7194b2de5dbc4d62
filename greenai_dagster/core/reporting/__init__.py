"""What a person reads: the experiment folder and its chart (`report`), the frontier as a table
(`frontier_text`), and `greenai analyze` over a finished folder (`analyze`)."""
