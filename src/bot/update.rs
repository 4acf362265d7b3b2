//! The parts of a Telegram Update the bot reads. Everything else is ignored; an update that
//! does not read as this is logged and acknowledged (Telegram would resend it on any non-2xx).

use serde::Deserialize;

use crate::domain::ids::TelegramId;

#[derive(Debug, Deserialize)]
pub struct Update {
    pub update_id: i64,
    pub message: Option<Message>,
    pub callback_query: Option<CallbackQuery>,
    pub my_chat_member: Option<ChatMemberUpdated>,
}

#[derive(Debug, Deserialize)]
pub struct User {
    pub id: TelegramId,
    #[serde(default)]
    pub is_bot: bool,
    #[serde(default)]
    pub first_name: String,
    pub last_name: Option<String>,
    pub username: Option<String>,
    pub language_code: Option<String>,
    #[serde(default)]
    pub is_premium: bool,
}

#[derive(Debug, Deserialize)]
pub struct Chat {
    pub id: i64,
    #[serde(rename = "type")]
    pub kind: String,
}

impl Chat {
    pub fn is_private(&self) -> bool {
        self.kind == "private"
    }
}

#[derive(Debug, Deserialize)]
pub struct Message {
    pub message_id: i64,
    pub from: Option<User>,
    pub chat: Chat,
    pub text: Option<String>,
}

/// A press on an inline button; `message` is the one carrying the keyboard (an
/// "inaccessible" message still has its chat and id).
#[derive(Debug, Deserialize)]
pub struct CallbackQuery {
    pub id: String,
    pub from: User,
    pub message: Option<Message>,
    pub data: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct ChatMemberUpdated {
    pub chat: Chat,
    pub from: User,
    pub new_chat_member: ChatMember,
}

#[derive(Debug, Deserialize)]
pub struct ChatMember {
    pub status: String,
}

/// A command and its arguments: `/start ref_x` → `("start", "ref_x")`; `/help@atelier_bot` →
/// `("help", "")`. None for text that is not a command.
pub fn command(text: &str) -> Option<(String, &str)> {
    let rest = text.trim_start().strip_prefix('/')?;
    let (head, args) = rest
        .split_once(char::is_whitespace)
        .map_or((rest, ""), |(h, a)| (h, a.trim()));
    let name = head.split('@').next().unwrap_or(head);
    (!name.is_empty()).then(|| (name.to_ascii_lowercase(), args))
}

#[cfg(test)]
mod tests {
    #[test]
    fn commands_are_split_from_their_arguments() {
        assert_eq!(
            super::command("/start ref_ab"),
            Some(("start".into(), "ref_ab"))
        );
        assert_eq!(
            super::command("/Help@atelier_bot"),
            Some(("help".into(), ""))
        );
        assert_eq!(super::command("hello"), None);
        assert_eq!(super::command("/"), None);
    }
}
