//! Runs keepalived's notify scripts (`notify_up`, `notify_down`, `quorum_up`,
//! `quorum_down`): the command line is split into words (double and single quotes
//! group, as keepalived's notify_script parser does) and executed directly, not
//! through a shell, in the background. Its exit status is logged, never waited on
//! by the health loop.
//!
//! Invariant: a script that cannot start is logged and changes nothing else.

use rvs_config::model::Script;

/// Splits a command line into words: whitespace separates, quotes group.
/// None when a quote is not closed.
pub fn split_words(line: &str) -> Option<Vec<String>> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    for ch in line.chars() {
        match quote {
            Some(q) if ch == q => quote = None,
            Some(_) => word.push(ch),
            None if ch == '"' || ch == '\'' => {
                quote = Some(ch);
                in_word = true;
            }
            None if ch.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            None => {
                word.push(ch);
                in_word = true;
            }
        }
    }
    if quote.is_some() {
        return None;
    }
    if in_word {
        words.push(word);
    }
    Some(words)
}

/// Starts `script` in the background; `why` names the transition for the log.
/// Must be called inside a tokio runtime.
pub fn run(script: &Script, why: &str) {
    let Some(words) = split_words(&script.command).filter(|w| !w.is_empty()) else {
        tracing::error!(script = %script.command, why, "notify script: cannot split the command line");
        return;
    };
    let mut cmd = tokio::process::Command::new(&words[0]);
    cmd.args(&words[1..])
        .stdin(std::process::Stdio::null())
        .kill_on_drop(false);
    match cmd.spawn() {
        Ok(mut child) => {
            let command = script.command.clone();
            let why = why.to_string();
            tokio::spawn(async move {
                match child.wait().await {
                    Ok(status) if status.success() => {
                        tracing::debug!(script = %command, why, "notify script done")
                    }
                    Ok(status) => {
                        tracing::warn!(script = %command, why, %status, "notify script failed")
                    }
                    Err(e) => tracing::warn!(script = %command, why, error = %e, "notify script"),
                }
            });
        }
        Err(e) => {
            tracing::error!(script = %script.command, why, error = %e, "notify script did not start")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::split_words;

    #[test]
    fn words_and_quotes() {
        assert_eq!(
            split_words("/bin/echo a  'b c' \"d e\"f").unwrap(),
            vec!["/bin/echo", "a", "b c", "d ef"]
        );
        assert_eq!(split_words("  ").unwrap(), Vec::<String>::new());
        assert_eq!(split_words("x ''").unwrap(), vec!["x", ""]);
        assert!(split_words("x 'open").is_none());
    }
}
