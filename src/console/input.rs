//! A live viewer's input: the messages a viewer may send, each field
//! checked and bounded, and the CDP command each one becomes. Nothing a
//! viewer adds to a message is forwarded.

use serde::Deserialize;
use serde_json::{Value, json};

/// Largest coordinate or delta taken, in CSS pixels.
const MAX_COORDINATE: f64 = 100_000.0;
/// Longest `text` input, and longest key name.
const MAX_TEXT_CHARS: usize = 1024;
const MAX_KEY_CHARS: usize = 32;

/// What a viewer sends.
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub(super) enum FromViewer {
    Mouse {
        event: MouseEvent,
        x: f64,
        y: f64,
        #[serde(default)]
        button: Button,
        #[serde(default)]
        clicks: u8,
        #[serde(default)]
        modifiers: u8,
    },
    Wheel {
        x: f64,
        y: f64,
        dx: f64,
        dy: f64,
        #[serde(default)]
        modifiers: u8,
    },
    Key {
        event: KeyEvent,
        key: String,
        #[serde(default)]
        code: String,
        #[serde(default)]
        text: String,
        #[serde(default)]
        key_code: u16,
        #[serde(default)]
        modifiers: u8,
    },
    Text {
        text: String,
    },
    Tab {
        target: String,
    },
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
pub(super) enum MouseEvent {
    Move,
    Down,
    Up,
}

#[derive(Deserialize, Clone, Copy, Default)]
#[serde(rename_all = "lowercase")]
pub(super) enum Button {
    #[default]
    None,
    Left,
    Middle,
    Right,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
pub(super) enum KeyEvent {
    Down,
    Up,
}

/// The CDP command for one input message, its fields checked.
pub(super) fn input(message: FromViewer) -> Result<(&'static str, Value), String> {
    let point = |field: &str, value: f64| {
        if value.is_finite() && (-MAX_COORDINATE..=MAX_COORDINATE).contains(&value) {
            Ok(value)
        } else {
            Err(format!(
                "{field}: must be a number within ±{MAX_COORDINATE}"
            ))
        }
    };
    let modifiers = |m: u8| {
        if m <= 15 {
            Ok(m)
        } else {
            Err("modifiers: a bit set of Alt=1, Ctrl=2, Meta=4, Shift=8".to_owned())
        }
    };
    match message {
        FromViewer::Mouse {
            event,
            x,
            y,
            button,
            clicks,
            modifiers: m,
        } => {
            let kind = match event {
                MouseEvent::Move => "mouseMoved",
                MouseEvent::Down => "mousePressed",
                MouseEvent::Up => "mouseReleased",
            };
            let button = match button {
                Button::None => "none",
                Button::Left => "left",
                Button::Middle => "middle",
                Button::Right => "right",
            };
            if clicks > 3 {
                return Err("clicks: 0 to 3".into());
            }
            Ok((
                "Input.dispatchMouseEvent",
                json!({
                    "type": kind,
                    "x": point("x", x)?,
                    "y": point("y", y)?,
                    "button": button,
                    "clickCount": clicks,
                    "modifiers": modifiers(m)?,
                }),
            ))
        }
        FromViewer::Wheel {
            x,
            y,
            dx,
            dy,
            modifiers: m,
        } => Ok((
            "Input.dispatchMouseEvent",
            json!({
                "type": "mouseWheel",
                "x": point("x", x)?,
                "y": point("y", y)?,
                "deltaX": point("dx", dx)?,
                "deltaY": point("dy", dy)?,
                "modifiers": modifiers(m)?,
            }),
        )),
        FromViewer::Key {
            event,
            key,
            code,
            text,
            key_code,
            modifiers: m,
        } => {
            for (field, value) in [("key", &key), ("code", &code), ("text", &text)] {
                if value.chars().count() > MAX_KEY_CHARS {
                    return Err(format!("{field}: at most {MAX_KEY_CHARS} characters"));
                }
            }
            let mut params = json!({
                "type": match event {
                    KeyEvent::Down if !text.is_empty() => "keyDown",
                    KeyEvent::Down => "rawKeyDown",
                    KeyEvent::Up => "keyUp",
                },
                "key": key,
                "code": code,
                "windowsVirtualKeyCode": key_code,
                "modifiers": modifiers(m)?,
            });
            if !text.is_empty() {
                params["text"] = json!(text);
            }
            Ok(("Input.dispatchKeyEvent", params))
        }
        FromViewer::Text { text } => {
            if text.chars().count() > MAX_TEXT_CHARS {
                return Err(format!("text: at most {MAX_TEXT_CHARS} characters"));
            }
            Ok(("Input.insertText", json!({"text": text})))
        }
        FromViewer::Tab { .. } => Err("not input".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(text: &str) -> Result<(&'static str, Value), String> {
        input(serde_json::from_str(text).map_err(|e| e.to_string())?)
    }

    #[test]
    fn input_is_checked_and_built_from_typed_fields() {
        let (method, params) =
            parsed(r#"{"type":"mouse","event":"down","x":10,"y":20,"button":"left","clicks":1}"#)
                .unwrap();
        assert_eq!(method, "Input.dispatchMouseEvent");
        assert_eq!(params["type"], "mousePressed");
        assert_eq!(params["button"], "left");
        // Fields a viewer adds are refused, not forwarded.
        assert!(parsed(r#"{"type":"text","text":"a","sessionId":"X"}"#).is_err());
        assert!(parsed(r#"{"type":"mouse","event":"down","x":1e300,"y":0}"#).is_err());
        assert!(parsed(r#"{"type":"mouse","event":"down","x":0,"y":0,"modifiers":99}"#).is_err());
        assert!(
            parsed(&format!(
                r#"{{"type":"text","text":"{}"}}"#,
                "a".repeat(2000)
            ))
            .is_err()
        );
        let (_, key) = parsed(r#"{"type":"key","event":"down","key":"a","text":"a"}"#).unwrap();
        assert_eq!(key["type"], "keyDown");
        assert_eq!(key["text"], "a");
    }
}
