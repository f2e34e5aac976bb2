"""Pure functions: validate, render, decide. No I/O."""
