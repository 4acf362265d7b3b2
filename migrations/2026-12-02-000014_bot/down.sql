DROP TABLE bot_chats;
DROP TABLE bot_updates;
