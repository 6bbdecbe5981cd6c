"""Models every domain shares: who a WeChat user is."""

from tortoise import fields
from tortoise.models import Model


class WechatUser(Model):
    """A person known to the public account by their openid (follower or not)."""

    id = fields.IntField(primary_key=True)
    openid = fields.CharField(max_length=64, unique=True)
    unionid = fields.CharField(max_length=64, null=True)
    subscribed = fields.BooleanField(default=False)
    # The QR scene of the last follow (``d:<system number>``, ``g:<group id>``): where the person came from.
    subscribe_scene = fields.CharField(max_length=64, null=True)
    subscribed_at = fields.DatetimeField(null=True)
    unsubscribed_at = fields.DatetimeField(null=True)
    # When the person last wrote to the account: customer-service messages are allowed for 48 h after it.
    last_interaction_at = fields.DatetimeField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "wechat_user"

    def __str__(self) -> str:
        return self.openid
