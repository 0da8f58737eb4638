//! App users: register, login, links, permissions, grants, settings. (Issue #3.)
