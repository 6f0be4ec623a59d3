"""The language front end: grammar, layout rules, parser and AST.  Imports nothing else of archlang but errors."""
