"""The `authledger` command line: the parser, every command's front end, and the
progress that long commands show."""
