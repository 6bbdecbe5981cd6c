"""The robot learns: the review queue, an agent's reply saved as a variant or a new entry, an admin's decision."""

from __future__ import annotations

import json

import pytest

from core import people
from core.errors import Forbidden
from core.models import User
from core.redis import create_redis
from core.settings import Settings
from knowledge import learning
from knowledge.demo import SEED
from knowledge.entries import import_entries
from knowledge.models import KBEntry, QuestionLog
from knowledge.robot import AskContext, KnowledgeIndex, answer


@pytest.fixture
async def team(db):
    assert (await import_entries(SEED.read_bytes(), "kb_seed.json")).accepted
    redis = create_redis(Settings(secret_key="t"))
    yield dict(agent=await User.create(name="李客服", role="agent"), admin=await User.create(name="管理员", role="admin"),
               nurse=await User.create(name="护士", role="staff"), redis=redis, index=KnowledgeIndex())
    await redis.aclose()


async def test_unanswered_and_unhelpful_questions_queue_for_review(team):
    from knowledge.robot import LOGS

    ask = AskContext(openid="oNurse", redis=team["redis"])
    declined = await answer("今天食堂吃什么", ask, team["index"])
    answered = await answer("消毒柜不热了", ask, team["index"])
    await answer("2", ask, team["index"])  # not helpful
    await LOGS.flush()  # questions without an answer are written in batches
    queue = {q.text: q.id for q in await learning.review_queue()}
    assert declined.kind == "decline" and "今天食堂吃什么" in queue and answered.log_id in queue.values()
    await learning.mark_reviewed(queue["今天食堂吃什么"], team["admin"])
    assert "今天食堂吃什么" not in [q.text for q in await learning.review_queue()]
    with pytest.raises(Forbidden):
        await learning.mark_reviewed(answered.log_id, team["nurse"])


async def test_a_variant_from_an_agent_works_at_once_and_a_rejection_removes_it(team):
    index, ask = team["index"], AskContext(openid="oNurse", redis=team["redis"])
    from knowledge.robot import LOGS

    said = "那个打气的机器一直哔哔叫管子那里"
    await answer(said, ask, index)
    await LOGS.flush()
    first = await QuestionLog.get(text=said)  # as the console finds it in the review queue
    proposal = await learning.save_reply(team["agent"], question=said, kind="variant", entry_id="vent-01",
                                         source_log_id=first.id)
    assert proposal.status == "applied"
    index.expire()
    again = await answer(said, AskContext(openid="oOther", redis=team["redis"]), index)
    assert (again.kind, again.entry_id) == ("answer", "vent-01")
    assert (await QuestionLog.get(id=first.id)).reviewed_at is not None
    await learning.decide(proposal.id, team["admin"], approve=False)
    assert said not in (await KBEntry.get(id="vent-01")).variants


async def test_a_new_entry_waits_for_an_admin(team):
    index = team["index"]
    proposal = await learning.save_reply(team["agent"], question="制冰机不出冰怎么办", kind="entry", entry_id="ice-01",
                                         answer="检查进水阀是否打开，水压是否正常。", device_type="ice_maker",
                                         tier="basic")
    assert proposal.status == "pending"
    ask = AskContext(openid="oA", redis=team["redis"])
    assert (await answer("制冰机不出冰怎么办", ask, index)).entry_id != "ice-01"
    with pytest.raises(Forbidden):
        await learning.decide(proposal.id, team["agent"], approve=True)
    await learning.decide(proposal.id, team["admin"], approve=True)
    index.expire()
    reply = await answer("制冰机不出冰怎么办", AskContext(openid="oB", redis=team["redis"]), index)
    assert (reply.kind, reply.entry_id) == ("answer", "ice-01")


async def test_the_api_for_agents_and_admins(serve, settings_for, database_url):
    live = await serve(settings_for(database_url))
    assert (await import_entries(SEED.read_bytes(), "kb_seed.json")).accepted
    agent = await User.create(name="李客服", role="agent")
    admin = await User.create(name="管理员", role="admin")

    def auth(user):
        return {"Authorization": f"Bearer {people.session_token(live.app.ctx.settings, user)}"}

    body = {"kind": "entry", "entry_id": "ice-01", "question": "制冰机不出冰", "answer": "检查进水阀。",
            "device_type": "ice_maker", "tier": "basic"}
    status, _, out = await live.request("POST", "/mp/v1/admin/kb/proposals", json=body, headers=auth(agent))
    proposal = json.loads(out)
    assert (status, proposal["status"]) == (201, "pending")
    status, _, _ = await live.request("POST", "/mp/v1/admin/kb/proposals", json=body, headers=auth(agent))
    assert status == 409  # the id is taken (by the pending entry)
    status, _, out = await live.request("GET", "/mp/v1/admin/kb/proposals", params={"status": "pending"},
                                        headers=auth(admin))
    assert [p["entry_id"] for p in json.loads(out)["proposals"]] == ["ice-01"]
    status, _, out = await live.request("POST", f"/mp/v1/admin/kb/proposals/{proposal['id']}/decision",
                                        json={"approve": True}, headers=auth(admin))
    assert (status, json.loads(out)["status"]) == (200, "approved")
    assert (await KBEntry.get(id="ice-01")).active
    status, _, _ = await live.request("GET", "/mp/v1/admin/kb/review", headers=auth(agent))
    assert status == 403
