//! Markup that models leak into their text and that must never reach people or the history
//! sent back: reasoning in `<think>` blocks, gpt-oss "harmony" channels
//! (`<|channel|>analysis<|message|>…<|end|>`), chat-template tokens (`<|im_end|>`), and
//! tool-call markup (`<tool_call>`, `<function=…>`) left over once the calls are read.

/// Splits a reply into its answer and its reasoning. Harmony tool calls
/// (`<|channel|>commentary to=functions.terminal<|message|>{…}<|call|>`) stay in the answer
/// as JSON calls, for [`super::text_calls`] to read.
pub fn split_reasoning(content: &str) -> (String, Option<String>) {
    let (answer, harmony_thinking) = split_harmony(content);
    let (answer, think) = split_think(&answer);
    let thinking = [harmony_thinking, think]
        .into_iter()
        .flatten()
        .map(|part| part.trim().to_string())
        .filter(|part| !part.is_empty())
        .reduce(|first, second| format!("{first}\n\n{second}"));
    (remove_special_tokens(&answer), thinking)
}

/// What people may see of an answer still streaming in: no reasoning, no tool-call markup
/// (from its first sign on, since the rest is a call being written).
pub fn visible(partial: &str) -> String {
    let (answer, _) = split_reasoning(partial);
    let cut = TOOL_MARKUP
        .iter()
        .filter_map(|marker| find_ignore_case(&answer, marker))
        .min()
        .unwrap_or(answer.len());
    answer[..cut].trim_end().to_string()
}

/// Where tool-call markup starts: Hermes, Qwen3-Coder/llama.cpp, Claude-style XML, and our
/// tools' names as XML tags in any spelling.
const TOOL_MARKUP: &[&str] = &[
    "<tool_call",
    "<function=",
    "<function_calls",
    "<invoke",
    "```xml",
    "<terminal",
    "<createorupdatefiles",
    "<create_or_update_files",
    "<readfiles",
    "<read_files",
];

/// Removes tool-call markup from an answer whose calls were read (or could not be): the
/// tags themselves, and anything after an opening tag that was never closed.
pub fn strip_leaked_calls(text: &str) -> String {
    let mut text = text.to_string();
    for tag in [
        "<tool_call>",
        "</tool_call>",
        "</function>",
        "</parameter>",
        "<function_calls>",
        "</function_calls>",
    ] {
        text = text.replace(tag, "");
    }
    // An unclosed `<tool_call>` or `<function=…` is a call cut short: not for people.
    let cut = ["<tool_call", "<function=", "<parameter="]
        .iter()
        .filter_map(|marker| text.find(marker))
        .min();
    if let Some(cut) = cut {
        text.truncate(cut);
    }
    drop_empty_fences(&text).trim().to_string()
}

/// Code fences with nothing left inside (a call was taken out of them); fences around real
/// code stay.
fn drop_empty_fences(text: &str) -> String {
    let mut kept = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find("```") {
        let after_open = &rest[open + 3..];
        let Some(close) = after_open.find("```") else {
            break;
        };
        let inside = &after_open[..close];
        let (first, body) = inside.split_once('\n').unwrap_or((inside, ""));
        let empty = if first.trim().chars().all(char::is_alphanumeric) {
            body.trim().is_empty()
        } else {
            inside.trim().is_empty()
        };
        kept.push_str(&rest[..open]);
        if !empty {
            kept.push_str(&rest[open..open + 3 + close + 3]);
        }
        rest = &after_open[close + 3..];
    }
    kept.push_str(rest);
    kept
}

fn find_ignore_case(haystack: &str, needle: &str) -> Option<usize> {
    haystack
        .to_ascii_lowercase()
        .find(&needle.to_ascii_lowercase())
}

/// `<think>…</think>` apart from the answer. A lone `</think>` ends reasoning that the chat
/// template opened in the prompt; a `<think>` never closed holds reasoning to the end.
fn split_think(content: &str) -> (String, Option<String>) {
    if let Some(end) = content.find("</think>") {
        let before = &content[..end];
        let (answer_before, thinking) = match before.find("<think>") {
            Some(start) => (&before[..start], &before[start + "<think>".len()..]),
            None => ("", before),
        };
        let (rest, more) = split_think(&content[end + "</think>".len()..]);
        let thinking = match more {
            Some(more) => format!("{thinking}\n\n{more}"),
            None => thinking.to_string(),
        };
        return (format!("{answer_before}{rest}"), Some(thinking));
    }
    match content.find("<think>") {
        Some(start) => (
            content[..start].to_string(),
            Some(content[start + "<think>".len()..].to_string()),
        ),
        None => (content.to_string(), None),
    }
}

/// Harmony messages: `analysis` is reasoning, `final` and plain `commentary` are the answer,
/// and `commentary to=functions.NAME` is a tool call, rewritten as `{"name", "arguments"}`.
fn split_harmony(content: &str) -> (String, Option<String>) {
    if !content.contains("<|channel|>") && !content.contains("<|message|>") {
        return (content.to_string(), None);
    }
    let mut answer = String::new();
    let mut thinking = String::new();
    // Each message: optional header up to `<|message|>`, then the body up to an end token.
    let mut rest = content;
    while !rest.is_empty() {
        let Some(message_at) = rest.find("<|message|>") else {
            answer.push_str(rest);
            break;
        };
        let header = &rest[..message_at];
        let body_start = message_at + "<|message|>".len();
        let body_end = ["<|end|>", "<|call|>", "<|return|>", "<|start|>"]
            .iter()
            .filter_map(|token| rest[body_start..].find(token).map(|at| body_start + at))
            .min()
            .unwrap_or(rest.len());
        let body = &rest[body_start..body_end];
        let channel = header
            .rsplit("<|channel|>")
            .next()
            .unwrap_or_default()
            .trim();
        if let Some(recipient) = channel.split("to=functions.").nth(1) {
            let name: String = recipient
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == '-')
                .collect();
            let arguments = body.trim();
            let arguments = if arguments.starts_with('{') {
                arguments.to_string()
            } else {
                serde_json::Value::String(arguments.to_string()).to_string()
            };
            answer.push_str(&format!(
                "\n{{\"name\": {}, \"arguments\": {arguments}}}\n",
                serde_json::Value::String(name)
            ));
        } else if header.contains("<|channel|>") && channel.starts_with("analysis") {
            thinking.push_str(body);
            thinking.push('\n');
        } else {
            answer.push_str(body);
        }
        rest = &rest[body_end..];
        // Skip the end token itself.
        if let Some(token_end) = rest.find("|>").filter(|_| rest.starts_with("<|")) {
            rest = &rest[token_end + 2..];
        }
    }
    let thinking = thinking.trim().to_string();
    (answer, (!thinking.is_empty()).then_some(thinking))
}

/// Chat-template tokens that leak into text: `<|im_end|>`, `<|eot_id|>`, `<|end|>`, …
fn remove_special_tokens(text: &str) -> String {
    let mut clean = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("<|") {
        clean.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after.find("|>") {
            Some(end)
                if end <= 40
                    && after[..end]
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_') =>
            {
                rest = &after[end + 2..];
            }
            _ => {
                clean.push_str("<|");
                rest = after;
            }
        }
    }
    clean.push_str(rest);
    clean
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn think_blocks_are_reasoning_even_unclosed_or_opened_by_the_template() {
        assert_eq!(
            split_reasoning("<think>plan</think>\nDone."),
            ("\nDone.".to_string(), Some("plan".to_string()))
        );
        assert_eq!(
            split_reasoning("plan first</think>answer"),
            ("answer".to_string(), Some("plan first".to_string()))
        );
        assert_eq!(
            split_reasoning("Hi <think>still thinking"),
            ("Hi ".to_string(), Some("still thinking".to_string()))
        );
    }

    #[test]
    fn harmony_channels_split_into_reasoning_answer_and_calls() {
        let (answer, thinking) = split_reasoning(
            "<|channel|>analysis<|message|>The user wants a page.<|end|><|start|>assistant<|channel|>final<|message|>Here it is.<|return|>",
        );
        assert_eq!(answer.trim(), "Here it is.");
        assert_eq!(thinking.as_deref(), Some("The user wants a page."));

        let (answer, thinking) = split_reasoning(
            "<|channel|>analysis<|message|>List files first.<|end|><|start|>assistant<|channel|>commentary to=functions.terminal <|constrain|>json<|message|>{\"command\":\"ls\"}<|call|>",
        );
        assert_eq!(thinking.as_deref(), Some("List files first."));
        assert_eq!(
            answer.trim(),
            r#"{"name": "terminal", "arguments": {"command":"ls"}}"#
        );
        assert!(!answer.contains("<|"));
    }

    #[test]
    fn leaked_tokens_and_tool_markup_never_show() {
        assert_eq!(split_reasoning("Done.<|im_end|>").0, "Done.");
        assert_eq!(split_reasoning("a <|not a token").0, "a <|not a token");
        assert_eq!(
            visible("I will list the files.\n<tool_call>\n<function=terminal>\n<parameter=comm"),
            "I will list the files."
        );
        assert_eq!(visible("Writing <think>hmm"), "Writing");
        assert_eq!(visible("Now: <terminal command=\"ls"), "Now:");
        assert_eq!(
            strip_leaked_calls(
                "Listing.\n<tool_call>\n<function=terminal>\n<parameter=command>\nls"
            ),
            "Listing."
        );
        assert_eq!(strip_leaked_calls("Done.\n</tool_call>"), "Done.");
        assert_eq!(strip_leaked_calls("Here:\n```json\n\n```\n"), "Here:");
        let code = "Run:\n```bash\nnpm test\n```";
        assert_eq!(strip_leaked_calls(code), code);
    }
}
