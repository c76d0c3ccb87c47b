"""Payload examples from Discord's API documentation (docs/resources/message,
docs/resources/guild, docs/interactions/application-commands), as published."""

from __future__ import annotations

from typing import Any

MESSAGE: dict[str, Any] = {
    "reactions": [
        {
            "count": 1,
            "count_details": {"burst": 0, "normal": 1},
            "me": False,
            "me_burst": False,
            "emoji": {"id": None, "name": "🔥"},
            "burst_colors": [],
        }
    ],
    "attachments": [],
    "tts": False,
    "embeds": [],
    "timestamp": "2017-07-11T17:27:07.299000+00:00",
    "mention_everyone": False,
    "id": "334385199974967042",
    "pinned": False,
    "edited_timestamp": None,
    "author": {
        "username": "Mason",
        "discriminator": "9999",
        "id": "53908099506183680",
        "avatar": "a_bab14f271d565501444b2ca3be944b25",
    },
    "mention_roles": [],
    "content": "Supa Hot",
    "channel_id": "290926798999357250",
    "mentions": [],
    "type": 0,
}

CROSSPOSTED_MESSAGE: dict[str, Any] = {
    **MESSAGE,
    "mention_channels": [
        {
            "id": "278325129692446722",
            "guild_id": "278325129692446720",
            "name": "big-news",
            "type": 5,
        }
    ],
    "content": "Big news! In this <#278325129692446722> channel!",
    "flags": 2,
    "message_reference": {
        "type": 0,
        "channel_id": "278325129692446722",
        "guild_id": "278325129692446720",
        "message_id": "306588351130107906",
    },
}

SLASH_COMMAND_INTERACTION: dict[str, Any] = {
    "type": 2,
    "token": "A_UNIQUE_TOKEN",
    "member": {
        "user": {
            "id": "53908232506183680",
            "username": "Mason",
            "avatar": "a_d5efa99b3eeaa7dd43acca82f5692432",
            "discriminator": "1337",
            "public_flags": 131141,
        },
        "roles": ["539082325061836999"],
        "premium_since": None,
        "permissions": "2147483647",
        "pending": False,
        "nick": None,
        "mute": False,
        "joined_at": "2017-03-13T19:19:14.040000+00:00",
        "is_pending": False,
        "deaf": False,
    },
    "id": "786008729715212338",
    "guild_id": "290926798626357999",
    "app_permissions": "442368",
    "guild_locale": "en-US",
    "locale": "en-US",
    "data": {
        "options": [{"type": 3, "name": "cardname", "value": "The Gitrog Monster"}],
        "type": 1,
        "name": "cardsearch",
        "id": "771825006014889984",
    },
    "channel_id": "645027906669510667",
}

_INVOKER: dict[str, Any] = {
    "avatar": None,
    "deaf": False,
    "is_pending": False,
    "joined_at": "2020-11-02T20:46:57.364000+00:00",
    "mute": False,
    "nick": None,
    "pending": False,
    "permissions": "274877906943",
    "premium_since": None,
    "roles": ["785609923542777878"],
    "user": {
        "avatar": "a_f03401914fb4f3caa9037578ab980920",
        "discriminator": "6538",
        "id": "167348773423415296",
        "public_flags": 1,
        "username": "ian",
    },
}

USER_COMMAND_INTERACTION: dict[str, Any] = {
    "application_id": "775799577604522054",
    "channel_id": "772908445358620702",
    "data": {
        "id": "866818195033292850",
        "name": "context-menu-user-2",
        "resolved": {
            "members": {
                "809850198683418695": {
                    "avatar": None,
                    "is_pending": False,
                    "joined_at": "2021-02-12T18:25:07.972000+00:00",
                    "nick": None,
                    "pending": False,
                    "permissions": "246997699136",
                    "premium_since": None,
                    "roles": [],
                }
            },
            "users": {
                "809850198683418695": {
                    "avatar": "afc428077119df8aabbbd84b0dc90c74",
                    "bot": True,
                    "discriminator": "7302",
                    "id": "809850198683418695",
                    "public_flags": 0,
                    "username": "VoltyDemo",
                }
            },
        },
        "target_id": "809850198683418695",
        "type": 2,
    },
    "guild_id": "772904309264089089",
    "guild_locale": "en-US",
    "app_permissions": "442368",
    "id": "867794291820986368",
    "locale": "en-US",
    "member": _INVOKER,
    "token": "UNIQUE_TOKEN",
    "type": 2,
    "version": 1,
}

MESSAGE_COMMAND_INTERACTION: dict[str, Any] = {
    **USER_COMMAND_INTERACTION,
    "data": {
        "id": "866818195033292851",
        "name": "context-menu-message-2",
        "resolved": {
            "messages": {
                "867793854505943041": {
                    "attachments": [],
                    "author": _INVOKER["user"],
                    "channel_id": "772908445358620702",
                    "components": [],
                    "content": "some message",
                    "edited_timestamp": None,
                    "embeds": [],
                    "flags": 0,
                    "id": "867793854505943041",
                    "mention_everyone": False,
                    "mention_roles": [],
                    "mentions": [],
                    "pinned": False,
                    "timestamp": "2021-07-22T15:42:57.744000+00:00",
                    "tts": False,
                    "type": 0,
                }
            }
        },
        "target_id": "867793854505943041",
        "type": 3,
    },
    "id": "867793873336926249",
}

GUILD: dict[str, Any] = {
    "id": "197038439483310086",
    "name": "Discord Testers",
    "icon": "f64c482b807da4f539cff778d174971c",
    "description": "The official place to report Discord Bugs!",
    "splash": None,
    "discovery_splash": None,
    "features": [
        "ANIMATED_ICON",
        "VERIFIED",
        "NEWS",
        "VANITY_URL",
        "DISCOVERABLE",
        "MORE_EMOJI",
        "INVITE_SPLASH",
        "BANNER",
        "COMMUNITY",
    ],
    "emojis": [],
    "banner": "9b6439a7de04f1d26af92f84ac9e1e4a",
    "owner_id": "73193882359173120",
    "application_id": None,
    "region": "us-west",
    "afk_channel_id": None,
    "afk_timeout": 300,
    "system_channel_id": None,
    "widget_enabled": True,
    "widget_channel_id": None,
    "verification_level": 3,
    "roles": [],
    "default_message_notifications": 1,
    "mfa_level": 1,
    "explicit_content_filter": 2,
    "max_presences": 40000,
    "max_members": 250000,
    "vanity_url_code": "discord-testers",
    "premium_tier": 3,
    "premium_subscription_count": 33,
    "system_channel_flags": 0,
    "preferred_locale": "en-US",
    "rules_channel_id": "441688182833020939",
    "public_updates_channel_id": "281283303326089216",
}

UNAVAILABLE_GUILD: dict[str, Any] = {"id": "41771983423143937", "unavailable": True}

GUILD_MEMBER: dict[str, Any] = {
    "user": MESSAGE["author"],
    "nick": "NOT API SUPPORT",
    "roles": [],
    "joined_at": "2015-04-26T06:26:56.936000+00:00",
    "deaf": False,
    "mute": False,
}

TEXT_CHANNEL: dict[str, Any] = {
    "id": "41771983423143937",
    "guild_id": "41771983423143937",
    "name": "general",
    "type": 0,
    "position": 6,
    "permission_overwrites": [],
    "rate_limit_per_user": 2,
    "nsfw": True,
    "topic": "24/7 chat about how to gank Mike #2",
    "last_message_id": "155117677105512449",
    "parent_id": "399942396007890945",
}
