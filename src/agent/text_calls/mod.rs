//! Tool calls written as text by models without native tool calling, or whose server did
//! not parse them: JSON (`{"name", "arguments"}`, bare, fenced or in `<tool_call>` tags) and
//! XML-ish forms (`<terminal command="ls"/>`, `<terminal><command>ls</command></terminal>`,
//! Qwen3-Coder's `<function=terminal><parameter=command>ls</parameter></function>`, and
//! `<invoke name="terminal"><parameter name="command">ls</parameter></invoke>`).
//!
//! Only our tools' names are read, and the arguments become the same JSON a structured call
//! carries, so the tools check them the same way.

mod element;

use element::{Element, children, element_at, text_value};
use serde_json::{Map, Value, json};

use super::reply::{canonical_tool_name, clean_arguments};
use super::tools::{EDIT_FILE, READ_FILES, TERMINAL, WRITE_FILES};
use crate::llm::{FunctionCall, ToolCall};

/// The calls in `text`, and the text without them.
pub fn calls_in_text(text: &str) -> (Vec<ToolCall>, String) {
    let (calls, rest) = json_calls(text);
    if !calls.is_empty() {
        return (calls, rest);
    }
    xml_calls(text)
}

fn new_call(name: &str, arguments: String) -> ToolCall {
    ToolCall {
        id: format!("call_{}", uuid::Uuid::now_v7().simple()),
        kind: "function".to_string(),
        function: FunctionCall {
            name: name.to_string(),
            arguments,
        },
    }
}

fn json_calls(text: &str) -> (Vec<ToolCall>, String) {
    let mut calls = Vec::new();
    let mut rest = String::new();
    let mut position = 0;
    while let Some(offset) = text[position..].find('{') {
        let start = position + offset;
        let mut values = serde_json::Deserializer::from_str(&text[start..]).into_iter::<Value>();
        let Some(Ok(value)) = values.next() else {
            rest.push_str(&text[position..=start]);
            position = start + 1;
            continue;
        };
        let end = start + values.byte_offset();
        match call_from_value(&value) {
            Some(call) => {
                calls.push(call);
                rest.push_str(&text[position..start]);
            }
            None => rest.push_str(&text[position..end]),
        }
        position = end;
    }
    rest.push_str(&text[position..]);
    (calls, rest)
}

fn call_from_value(value: &Value) -> Option<ToolCall> {
    let object = value.as_object()?;
    let function = object.get("function").and_then(Value::as_object);
    let field = |names: &[&str]| {
        names.iter().find_map(|name| {
            function
                .and_then(|f| f.get(*name))
                .or_else(|| object.get(*name))
        })
    };
    let name = canonical_tool_name(field(&["name", "tool"])?.as_str()?)?;
    let arguments = match field(&["arguments", "parameters", "args", "input"]) {
        Some(Value::String(text)) => clean_arguments(text),
        Some(other) => other.to_string(),
        None => "{}".to_string(),
    };
    Some(new_call(name, arguments))
}

fn xml_calls(text: &str) -> (Vec<ToolCall>, String) {
    let mut calls = Vec::new();
    let mut rest = String::new();
    let mut position = 0;
    while let Some(offset) = text[position..].find('<') {
        let start = position + offset;
        let call = element_at(text, start).and_then(|element| {
            let call = call_from_element(&element)?;
            Some((call, element.end))
        });
        match call {
            Some((call, end)) => {
                rest.push_str(&text[position..start]);
                calls.push(call);
                position = end;
            }
            None => {
                rest.push_str(&text[position..=start]);
                position = start + 1;
            }
        }
    }
    rest.push_str(&text[position..]);
    if calls.is_empty() {
        return (calls, text.to_string());
    }
    (calls, remove_wrappers(&rest))
}

/// What is left around XML calls: wrapper tags (`<command>`, `<tool_call>`) with nothing in
/// them are dropped.
fn remove_wrappers(rest: &str) -> String {
    let mut text = rest.to_string();
    for tag in [
        "tool_call",
        "tool_calls",
        "function_calls",
        "command",
        "commands",
        "tool",
        "tools",
        "xml",
    ] {
        text = text
            .replace(&format!("<{tag}>"), "")
            .replace(&format!("</{tag}>"), "");
    }
    text
}

/// The parameters of a call element: attributes, then children (`<key>v</key>`, or
/// `<parameter name="key">v</parameter>`).
fn parameters(element: &Element<'_>) -> Vec<(String, String, Option<usize>)> {
    let mut found: Vec<(String, String, Option<usize>)> = element
        .attributes
        .iter()
        .filter(|(key, _)| key != "name" || element.tag != "function")
        .map(|(key, value)| (key.clone(), value.clone(), None))
        .collect();
    for (index, child) in children(element.inner).into_iter().enumerate() {
        let key = match child.tag {
            "parameter" | "param" | "arg" | "argument" => match child.attribute("name") {
                Some(name) => name.to_string(),
                None => continue,
            },
            tag => tag.to_string(),
        };
        found.push((key, text_value(child.inner), Some(index)));
    }
    found
}

fn call_from_element(element: &Element<'_>) -> Option<ToolCall> {
    let named = match element.tag {
        "function" | "invoke" | "tool_call" | "tool" => element.attribute("name")?,
        tag => tag,
    };
    let tool = canonical_tool_name(named)?;
    let parameters = parameters(element);
    let value_of = |keys: &[&str]| {
        parameters
            .iter()
            .find(|(key, _, _)| keys.contains(&key.as_str()))
            .map(|(_, value, _)| value.clone())
    };
    let arguments = match tool {
        TERMINAL => {
            let command = value_of(&["command", "cmd"]).or_else(|| {
                (parameters.is_empty() && !element.inner.trim().is_empty())
                    .then(|| text_value(element.inner))
            })?;
            json!({ "command": command })
        }
        READ_FILES => {
            let files = match value_of(&["files"]) {
                Some(files) => list_value(&files),
                None => parameters
                    .iter()
                    .filter(|(key, _, _)| key == "file" || key == "path")
                    .map(|(_, value, _)| Value::String(value.trim().to_string()))
                    .collect(),
            };
            json!({ "files": files })
        }
        WRITE_FILES => json!({ "files": files_to_write(element, &parameters) }),
        EDIT_FILE => {
            let path = value_of(&["path", "file"])?;
            // `<edits>[JSON]</edits>`, or a single edit as `<find>` and `<replace>`.
            let edits = match value_of(&["edits"]) {
                Some(edits) => serde_json::from_str::<Value>(edits.trim()).ok()?,
                None => {
                    json!([{ "find": value_of(&["find"])?, "replace": value_of(&["replace"])? }])
                }
            };
            json!({ "path": path.trim(), "edits": edits })
        }
        _ => return None,
    };
    Some(new_call(tool, arguments.to_string()))
}

/// `["a", "b"]` as JSON, or one path per line or comma.
fn list_value(text: &str) -> Vec<Value> {
    if let Ok(Value::Array(items)) = serde_json::from_str::<Value>(text.trim()) {
        return items;
    }
    text.split(['\n', ','])
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(|item| Value::String(item.to_string()))
        .collect()
}

/// The files of a `createOrUpdateFiles` element: `<files>[JSON]</files>`, `<file path="…">
/// content</file>` or `<file><path>…</path><content>…</content></file>`, or one file given
/// by `<path>` and `<content>` directly.
fn files_to_write(element: &Element<'_>, parameters: &[(String, String, Option<usize>)]) -> Value {
    if let Some((_, files, _)) = parameters.iter().find(|(key, _, _)| key == "files")
        && let Ok(value @ Value::Array(_)) = serde_json::from_str::<Value>(files.trim())
    {
        return value;
    }
    let file_of = |holder: &Element<'_>| {
        let fields = parameters_of_file(holder);
        let path = fields.get("path")?.as_str()?.trim().to_string();
        let content = fields.get("content").cloned().unwrap_or_default();
        Some(json!({ "path": path, "content": content }))
    };
    let mut files: Vec<Value> = children(element.inner)
        .iter()
        .filter(|child| child.tag == "file")
        .filter_map(file_of)
        .collect();
    if files.is_empty()
        && let Some(file) = file_of(element)
    {
        files.push(file);
    }
    Value::Array(files)
}

fn parameters_of_file(holder: &Element<'_>) -> Map<String, Value> {
    let mut fields = Map::new();
    if let Some(path) = holder.attribute("path") {
        fields.insert("path".into(), Value::String(path.to_string()));
        let kids = children(holder.inner);
        if !kids.iter().any(|child| child.tag == "content") {
            fields.insert(
                "content".into(),
                Value::String(strip_one_newline(holder.inner)),
            );
        }
    }
    for child in children(holder.inner) {
        match child.tag {
            "path" => {
                fields.insert("path".into(), Value::String(text_value(child.inner)));
            }
            "content" => {
                fields.insert(
                    "content".into(),
                    Value::String(strip_one_newline(child.inner)),
                );
            }
            _ => {}
        }
    }
    fields
}

/// File content: only the line break right after the opening tag is not the file's.
fn strip_one_newline(inner: &str) -> String {
    let inner = inner
        .strip_prefix("\r\n")
        .or_else(|| inner.strip_prefix('\n'))
        .unwrap_or(inner);
    inner
        .strip_prefix("<![CDATA[")
        .and_then(|rest| rest.trim_end().strip_suffix("]]>"))
        .unwrap_or(inner)
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn only_call(text: &str) -> (String, Value, String) {
        let (calls, rest) = calls_in_text(text);
        assert_eq!(calls.len(), 1, "{text}");
        let arguments = serde_json::from_str(&calls[0].function.arguments).unwrap();
        (calls[0].function.name.clone(), arguments, rest)
    }

    #[test]
    fn xml_calls_in_attribute_and_element_forms() {
        let (name, arguments, rest) =
            only_call("Let me look.\n<terminal command=\"ls -l &amp;&amp; pwd\" />");
        assert_eq!(name, TERMINAL);
        assert_eq!(arguments, json!({ "command": "ls -l && pwd" }));
        assert_eq!(rest.trim(), "Let me look.");
    }

    #[test]
    fn nested_command_wrappers_are_read() {
        let (name, arguments, rest) = only_call(
            "```xml\n<command><terminal><command>ls -l</command></terminal></command>\n```",
        );
        assert_eq!(name, TERMINAL);
        assert_eq!(arguments, json!({ "command": "ls -l" }));
        assert_eq!(rest.replace("```xml", "").replace("```", "").trim(), "");
    }

    #[test]
    fn qwen3_coder_and_invoke_forms_are_read() {
        let (name, arguments, _) = only_call(
            "<tool_call>\n<function=terminal>\n<parameter=command>\nnpm install zod\n</parameter>\n</function>\n</tool_call>",
        );
        assert_eq!(name, TERMINAL);
        assert_eq!(arguments, json!({ "command": "npm install zod" }));
        let (name, arguments, _) = only_call(
            "<invoke name=\"read_files\"><parameter name=\"files\">[\"app/page.tsx\"]</parameter></invoke>",
        );
        assert_eq!(name, READ_FILES);
        assert_eq!(arguments, json!({ "files": ["app/page.tsx"] }));
    }

    #[test]
    fn edits_are_read_as_a_json_list_or_one_find_and_replace() {
        let (name, arguments, _) = only_call(
            "<function=edit_file>\n<parameter=path>app/page.tsx</parameter>\n<parameter=edits>[{\"find\": \"Hi\", \"replace\": \"Hello\"}]</parameter>\n</function>",
        );
        assert_eq!(name, EDIT_FILE);
        assert_eq!(
            arguments,
            json!({ "path": "app/page.tsx", "edits": [{ "find": "Hi", "replace": "Hello" }] })
        );
        let (_, arguments, _) = only_call(
            "<editFile><path>app/page.tsx</path><find><h1>Hi</h1></find><replace><h1>Hello</h1></replace></editFile>",
        );
        assert_eq!(
            arguments,
            json!({ "path": "app/page.tsx", "edits": [{ "find": "<h1>Hi</h1>", "replace": "<h1>Hello</h1>" }] })
        );
    }

    #[test]
    fn files_are_written_with_their_markup_intact() {
        let (name, arguments, _) = only_call(
            "<createOrUpdateFiles>\n<file path=\"app/page.tsx\">\nexport default function Page() {\n  return <main><h1>Hi</h1></main>;\n}\n</file>\n</createOrUpdateFiles>",
        );
        assert_eq!(name, WRITE_FILES);
        assert_eq!(
            arguments["files"][0]["content"],
            "export default function Page() {\n  return <main><h1>Hi</h1></main>;\n}\n"
        );
        let (_, arguments, _) = only_call(
            "<create_or_update_files><file><path>a.txt</path><content>one</content></file><file><path>b.txt</path><content>two</content></file></create_or_update_files>",
        );
        assert_eq!(
            arguments,
            json!({ "files": [{ "path": "a.txt", "content": "one" }, { "path": "b.txt", "content": "two" }] })
        );
        let (_, arguments, _) =
            only_call("<readFiles><file>a.txt</file><file>b.txt</file></readFiles>");
        assert_eq!(arguments, json!({ "files": ["a.txt", "b.txt"] }));
    }

    #[test]
    fn other_tags_and_unknown_tools_stay_text() {
        for text in [
            "Use a <main> element for the page.",
            "<rm_rf path=\"/\" />",
            "<terminal>",
            "<script>alert(1)</script>",
        ] {
            let (calls, rest) = calls_in_text(text);
            assert!(calls.is_empty(), "{text}");
            assert_eq!(rest, text);
        }
    }
}
