//! keepalived.conf support (being written): lexer, parser, model.
