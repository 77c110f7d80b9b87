//! The subset of Go's `text/template` that kuiperbelt configs use (through kayac/go-config):
//! `{{ env "NAME" "default" }}` and `{{ must_env "NAME" }}`, with `{{-`/`-}}` trimming and
//! `{{/* comments */}}`. Anything else is rejected with its line number rather than guessed at.

/// Why a config template could not be rendered.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TemplateError {
    /// `{{` without a closing `}}`.
    #[error("line {line}: unclosed template action")]
    Unclosed {
        /// 1-based line of the `{{`.
        line: usize,
    },
    /// `must_env` named a variable that is not set.
    #[error("line {line}: must_env: environment variable {name} is not defined")]
    MissingEnv {
        /// 1-based line.
        line: usize,
        /// The variable.
        name: String,
    },
    /// A function or syntax that kuiperbelt configs do not use.
    #[error(
        "line {line}: unsupported template action {{{{{action}}}}} (only env and must_env are supported)"
    )]
    Unsupported {
        /// 1-based line.
        line: usize,
        /// The action's text.
        action: String,
    },
    /// A malformed string literal or wrong argument count.
    #[error("line {line}: {message}")]
    Syntax {
        /// 1-based line.
        line: usize,
        /// What was wrong.
        message: String,
    },
}

/// Renders `template`, reading variables through `env`.
pub(crate) fn render(
    template: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<String, TemplateError> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find("{{") {
        let line = line_of(template, rest, open);
        let (literal, after_open) = rest.split_at(open);
        let after_open = &after_open[2..];
        let close = after_open
            .find("}}")
            .ok_or(TemplateError::Unclosed { line })?;
        let mut action = &after_open[..close];
        let mut after_close = &after_open[close + 2..];
        let mut literal = literal;
        if let Some(trimmed) = action.strip_prefix("- ") {
            literal = literal.trim_end();
            action = trimmed;
        }
        if let Some(trimmed) = action.strip_suffix(" -") {
            after_close = after_close.trim_start();
            action = trimmed;
        }
        out.push_str(literal);
        out.push_str(&evaluate(action.trim(), line, env)?);
        rest = after_close;
    }
    out.push_str(rest);
    Ok(out)
}

fn line_of(template: &str, rest: &str, offset: usize) -> usize {
    let consumed = template.len() - rest.len() + offset;
    template[..consumed].matches('\n').count() + 1
}

fn evaluate(
    action: &str,
    line: usize,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<String, TemplateError> {
    if action.starts_with("/*") && action.ends_with("*/") {
        return Ok(String::new());
    }
    let (function, args_text) = action
        .split_once(char::is_whitespace)
        .unwrap_or((action, ""));
    let unsupported = || TemplateError::Unsupported {
        line,
        action: action.to_owned(),
    };
    match function {
        "env" => {
            let args = parse_string_args(args_text, line)?;
            if args.is_empty() {
                return Err(TemplateError::Syntax {
                    line,
                    message: "env needs at least one argument".into(),
                });
            }
            Ok(go_config_env(&args, env))
        }
        "must_env" => {
            let args = parse_string_args(args_text, line)?;
            let [name] = args.as_slice() else {
                return Err(TemplateError::Syntax {
                    line,
                    message: "must_env takes exactly one argument".into(),
                });
            };
            env(name).ok_or_else(|| TemplateError::MissingEnv {
                line,
                name: name.clone(),
            })
        }
        _ => Err(unsupported()),
    }
}

/// go-config's `env`: each argument is tried as a variable name in turn and the first non-empty
/// value wins; when none is set, the last argument itself is the result. So `env "A" "x"` yields
/// `$A` or `"x"`, and `env "A"` alone yields `"A"` when `$A` is unset.
fn go_config_env(args: &[String], env: &dyn Fn(&str) -> Option<String>) -> String {
    let mut value = String::new();
    for name in args {
        match env(name) {
            Some(found) if !found.is_empty() => return found,
            _ => value.clone_from(name),
        }
    }
    value
}

fn parse_string_args(text: &str, line: usize) -> Result<Vec<String>, TemplateError> {
    let mut args = Vec::new();
    let mut chars = text.trim().chars().peekable();
    while let Some(&first) = chars.peek() {
        if first.is_whitespace() {
            chars.next();
            continue;
        }
        chars.next();
        let arg = match first {
            '"' => parse_interpreted_string(&mut chars, line)?,
            '`' => {
                let raw: String = chars.by_ref().take_while(|c| *c != '`').collect();
                raw
            }
            _ => {
                return Err(TemplateError::Syntax {
                    line,
                    message: format!("expected a quoted string argument, found {first:?}"),
                });
            }
        };
        args.push(arg);
    }
    Ok(args)
}

fn parse_interpreted_string(
    chars: &mut impl Iterator<Item = char>,
    line: usize,
) -> Result<String, TemplateError> {
    let mut value = String::new();
    loop {
        match chars.next() {
            None => {
                return Err(TemplateError::Syntax {
                    line,
                    message: "unterminated string".into(),
                });
            }
            Some('"') => return Ok(value),
            Some('\\') => match chars.next() {
                Some('n') => value.push('\n'),
                Some('t') => value.push('\t'),
                Some('r') => value.push('\r'),
                Some(other @ ('"' | '\\')) => value.push(other),
                other => {
                    return Err(TemplateError::Syntax {
                        line,
                        message: format!("unsupported escape \\{}", other.unwrap_or(' ')),
                    });
                }
            },
            Some(other) => value.push(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn env_with_default() {
        let env = env_of(&[("PORT", "8080"), ("EMPTY", "")]);
        assert_eq!(
            render(r#"port: {{ env "PORT" "9180" }}"#, &env).unwrap(),
            "port: 8080"
        );
        assert_eq!(
            render(r#"port: {{ env "NOPE" "9180" }}"#, &env).unwrap(),
            "port: 9180"
        );
        assert_eq!(
            render(r#"port: {{ env "EMPTY" "9180" }}"#, &env).unwrap(),
            "port: 9180"
        );
        assert_eq!(render(r#"x: {{ env "NOPE" }}"#, &env).unwrap(), "x: NOPE");
        assert_eq!(render(r#"x: {{env `PORT`}}"#, &env).unwrap(), "x: 8080");
    }

    #[test]
    fn must_env_fails_with_the_variable_name_and_line() {
        let env = env_of(&[("SET", "")]);
        assert_eq!(render(r#"a: {{ must_env "SET" }}"#, &env).unwrap(), "a: ");
        let err = render("a: 1\nb: {{ must_env \"MISSING\" }}", &env).unwrap_err();
        assert_eq!(
            err,
            TemplateError::MissingEnv {
                line: 2,
                name: "MISSING".into()
            }
        );
        assert!(err.to_string().contains("MISSING"));
    }

    #[test]
    fn trimming_and_comments() {
        let env = env_of(&[]);
        assert!(
            render("a:   {{- \"x\" | print -}}", &env)
                .unwrap_err()
                .to_string()
                .contains("unsupported")
        );
        assert_eq!(
            render("a: x  \n{{- /* note */ -}}\n  b", &env).unwrap(),
            "a: xb"
        );
        assert_eq!(
            render("{{/* only a comment */}}k: v", &env).unwrap(),
            "k: v"
        );
    }

    #[test]
    fn rejects_what_it_does_not_understand() {
        let env = env_of(&[]);
        assert!(matches!(
            render("{{ .Values.x }}", &env),
            Err(TemplateError::Unsupported { line: 1, .. })
        ));
        assert!(matches!(
            render("a\n{{ env \"x", &env),
            Err(TemplateError::Unclosed { line: 2 })
        ));
        assert!(matches!(
            render("{{ env \"x }}", &env),
            Err(TemplateError::Syntax { .. })
        ));
        assert!(matches!(
            render("{{ env PORT }}", &env),
            Err(TemplateError::Syntax { .. })
        ));
        assert!(matches!(
            render("{{ must_env \"A\" \"B\" }}", &env),
            Err(TemplateError::Syntax { .. })
        ));
    }

    #[test]
    fn text_without_actions_is_unchanged() {
        let env = env_of(&[]);
        let text = "port: \"9180\"\nproxy_set_header:\n  X-Foo: Foo\n";
        assert_eq!(render(text, &env).unwrap(), text);
    }
}
