// Administration: hospitals and departments, users and roles, invitation codes, the knowledge-base review queue
// and proposals, device import. Administrators only (the server checks; the menu shows it to them alone).

import { api, setSession } from './api.js';
import { empty, fmtPercent, fmtTime, h, replace, select } from './dom.js';
import { badge, busy, errorBox, flash } from './ui.js';

const ROLE_LABELS = { admin: '管理员', agent: '客服', engineer: '工程师', doctor: '医生', staff: '员工' };
const SECTIONS = {
  hospitals: ['医院与科室', renderHospitals],
  users: ['用户与角色', renderUsers],
  invitations: ['邀请码', renderInvitations],
  kb: ['知识库审核', renderKb],
  devices: ['设备导入', renderDevices],
};
let hospitalsCache = null;

export function title(section) { return (SECTIONS[section] || ['系统管理'])[0]; }

export function render(container, section) {
  const entry = SECTIONS[section];
  if (!entry) { replace(container, empty('没有这个页面')); return; }
  entry[1](container);
}

export function leave() {}

function items(body, ...keys) {
  if (Array.isArray(body)) return body;
  for (const key of [...keys, 'items']) if (body && Array.isArray(body[key])) return body[key];
  return [];
}

async function hospitals(fresh = false) {
  if (!hospitalsCache || fresh) hospitalsCache = items(await api.get('/admin/hospitals'), 'hospitals');
  return hospitalsCache;
}

function table(headers, rows, emptyText) {
  return h('div', { class: 'table-wrap' }, h('table', { class: 'table' },
    h('thead', null, h('tr', null, headers.map((t) => h('th', { text: t })))),
    h('tbody', null, rows.length ? rows : h('tr', null, h('td', { attrs: { colspan: headers.length } }, empty(emptyText))))));
}

function field(label, input, hint) {
  return h('label', { class: 'form-field' }, h('span', { class: 'field-label', text: label }), input,
    hint ? h('span', { class: 'field-hint', text: hint }) : null);
}

function input(props) { return h('input', { class: 'input', type: 'text', ...props }); }

function panel(titleText, ...children) {
  return h('section', { class: 'panel' }, titleText ? h('h2', { class: 'panel-title', text: titleText }) : null, ...children);
}

function hospitalChecks(all, chosen) {
  const set = new Set((chosen || []).map(Number));
  return h('div', { class: 'check-list' }, all.length ? all.map((x) => h('label', { class: 'check' },
    h('input', { type: 'checkbox', value: String(x.id), checked: set.has(x.id) }), h('span', { text: x.name }))) : h('span', { class: 'muted', text: '还没有医院' }));
}

function checkedIds(box) {
  return [...box.querySelectorAll('input[type=checkbox]:checked')].map((el) => Number(el.value));
}

async function guarded(container, fn) {
  try { await fn(); } catch (err) { replace(container, empty(err.message)); }
}

// -- hospitals and departments --------------------------------------------------------------------------------------
function renderHospitals(container) {
  guarded(container, async () => {
    const list = await hospitals(true);
    const name = input({ maxLength: 128, placeholder: '例如：市第一人民医院', required: true });
    const aliases = input({ maxLength: 512, placeholder: '简称，用空格或逗号分隔（选填）' });
    const address = input({ maxLength: 256, placeholder: '选填' });
    const problem = errorBox();
    const save = h('button', { type: 'submit', class: 'btn btn-primary', text: '添加医院' });
    const form = h('form', { class: 'form-grid', id: 'hospital-form' }, field('医院名称', name), field('别名', aliases), field('地址', address), problem, h('div', { class: 'form-actions' }, save));
    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      busy(save, async () => {
        await api.post('/admin/hospitals', { name: name.value, aliases: aliases.value, address: address.value });
        flash(`已添加医院：${name.value.trim()}`);
        api.get('/me').then(setSession, () => {}); // the queue's and dashboard's hospital lists include it now
        renderHospitals(container);
      }, problem);
    });
    const detail = h('div', { class: 'hospital-detail' }, empty('选择左侧的医院以管理其科室'));
    const rows = list.map((x) => h('tr', { class: 'clickable', dataset: { id: String(x.id) }, on: { click: () => showHospital(detail, x) } },
      h('td', { class: 'mono', text: x.id }), h('td', { text: x.name }), h('td', { class: 'muted', text: x.aliases || '' }), h('td', { class: 'muted', text: x.address || '' })));
    replace(container, h('div', { class: 'split' },
      h('div', null, panel('医院', table(['编号', '名称', '别名', '地址'], rows, '还没有医院')), panel('添加医院', form)),
      detail));
  });
}

async function showHospital(detail, hospital) {
  const name = input({ value: hospital.name, maxLength: 128 });
  const aliases = input({ value: hospital.aliases || '', maxLength: 512 });
  const address = input({ value: hospital.address || '', maxLength: 256 });
  const problem = errorBox();
  const save = h('button', { type: 'submit', class: 'btn btn-primary', text: '保存' });
  const edit = h('form', { class: 'form-grid' }, field('医院名称', name), field('别名', aliases), field('地址', address), problem, h('div', { class: 'form-actions' }, save));
  edit.addEventListener('submit', (ev) => {
    ev.preventDefault();
    busy(save, async () => {
      await api.put(`/admin/hospitals/${hospital.id}`, { name: name.value, aliases: aliases.value, address: address.value });
      flash('已保存');
      hospitalsCache = null;
    }, problem);
  });
  const deptList = h('ul', { class: 'plain-list' }, h('li', { class: 'muted', text: '加载中…' }));
  const deptName = input({ maxLength: 64, placeholder: '例如：重症医学科' });
  const deptProblem = errorBox();
  const add = h('button', { type: 'submit', class: 'btn btn-primary', text: '添加科室' });
  const loadDepartments = async () => {
    try {
      const depts = items(await api.get(`/admin/hospitals/${hospital.id}/departments`), 'departments');
      replace(deptList, depts.length ? depts.map((d) => h('li', { text: d.name })) : h('li', { class: 'muted', text: '还没有科室' }));
    } catch (err) { replace(deptList, h('li', { class: 'muted', text: err.message })); }
  };
  const deptForm = h('form', { class: 'inline-form' }, deptName, add);
  deptForm.addEventListener('submit', (ev) => {
    ev.preventDefault();
    busy(add, async () => {
      await api.post(`/admin/hospitals/${hospital.id}/departments`, { name: deptName.value });
      deptName.value = '';
      await loadDepartments();
    }, deptProblem);
  });
  replace(detail, panel(hospital.name, edit), panel('科室', deptList, deptForm, deptProblem));
  loadDepartments();
}

// -- users ----------------------------------------------------------------------------------------------------------
function renderUsers(container) {
  guarded(container, async () => {
    const [all, body] = await Promise.all([hospitals(), api.get('/admin/users')]);
    const users = items(body, 'users');
    const byId = new Map(all.map((x) => [x.id, x.name]));
    const served = (u) => (u.hospitals || u.served_hospitals || []).map((x) => (typeof x === 'object' ? x.name : byId.get(x) || x)).join('、');
    const detail = h('div', { class: 'user-detail' }, empty('选择一个用户以修改角色、服务医院或重置密码'));
    const rows = users.map((u) => h('tr', { class: 'clickable', dataset: { id: String(u.id) }, on: { click: () => editUser(detail, u, all, () => renderUsers(container)) } },
      h('td', { text: u.username || '—' }), h('td', { text: u.name || '' }), h('td', null, badge(ROLE_LABELS[u.role] || u.role, `role-${u.role}`), doctorOf(u)),
      h('td', { text: served(u) || '—' }), h('td', null, u.active === false ? badge('已停用', 'muted') : badge('正常', 'ok'))));
    replace(container, h('div', { class: 'split' },
      h('div', null, panel('控制台用户', table(['用户名', '姓名', '角色', '服务医院', '状态'], rows, '还没有用户')), panel('新建用户', newUserForm(all, () => renderUsers(container)))),
      detail));
  });
}

const ROLE_OPTIONS = [['agent', '客服'], ['engineer', '工程师'], ['admin', '管理员'], ['doctor', '医生']];

function practitionerLabel(p) {
  return `${p.name || '（无姓名）'}${p.department ? ` · ${p.department}` : ''}${p.his_id ? `（HIS ${p.his_id}）` : ''}`;
}

/** Under a doctor's role badge: the practitioner the account is (or that it has none yet). */
function doctorOf(u) {
  if (u.role !== 'doctor') return null;
  return h('span', { class: 'field-hint', dataset: { practitioner: u.practitioner ? String(u.practitioner.id) : '' }, text: u.practitioner ? practitionerLabel(u.practitioner) : '未关联医生' });
}

/**
 * The practitioner a doctor's account is linked to: a search field (name, department or HIS id) and a select of the
 * active practitioners found; those linked to another account are shown but cannot be chosen. Shown only while the
 * role select says doctor. value(): the chosen id, or null.
 */
function practitionerPicker(role, current, userId) {
  const search = input({ type: 'search', maxLength: 64, placeholder: '输入医生姓名、科室或 HIS 编号搜索', attrs: { 'aria-label': '搜索医生' } });
  const choice = h('select', { class: 'input', attrs: { 'aria-label': '关联医生' } });
  const status = h('span', { class: 'field-hint', hidden: true });
  const say = (text) => { status.textContent = text; status.hidden = !text; };
  const box = field('关联医生', h('div', { class: 'form-grid practitioner-picker' }, search, choice, status), '医生账号只看到所关联医生的问诊');
  let timer = null;
  let asked = 0;
  const load = async () => {
    const mine = ++asked;
    let found;
    try { found = items(await api.get('/admin/practitioners', { q: search.value.trim() }), 'practitioners'); } catch (err) { say(err.message); return; }
    if (mine !== asked) return; // a later search is on its way
    const keep = choice.value || (current ? String(current.id) : '');
    const list = current && !found.some((p) => p.id === current.id) ? [current, ...found] : found;
    replace(choice, h('option', { value: '', text: list.length ? '请选择医生' : '没有找到医生' }), list.map((p) => {
      const other = p.linked_to && p.linked_to.id !== userId ? p.linked_to : null;
      return h('option', { value: String(p.id), disabled: Boolean(other), text: other ? `${practitionerLabel(p)} — 已关联 ${other.username}` : practitionerLabel(p) });
    }));
    if ([...choice.options].some((o) => o.value === keep && !o.disabled)) choice.value = keep;
    say(found.length >= 20 ? '只显示前 20 位，请输入更多字缩小范围' : '');
  };
  search.addEventListener('input', () => { clearTimeout(timer); timer = setTimeout(load, 250); });
  const toggle = () => {
    box.hidden = role.value !== 'doctor';
    if (!box.hidden && !choice.options.length) load();
  };
  role.addEventListener('change', toggle);
  toggle();
  return { node: box, value: () => (choice.value ? Number(choice.value) : null) };
}

function newUserForm(all, done) {
  const username = input({ maxLength: 64, autocomplete: 'off', placeholder: '登录用，字母或数字开头' });
  const name = input({ maxLength: 64 });
  const role = select(ROLE_OPTIONS, { class: 'input' });
  const doctor = practitionerPicker(role, null, null);
  const password = h('input', { class: 'input', type: 'password', autocomplete: 'new-password', maxLength: 256 });
  const served = hospitalChecks(all, []);
  const problem = errorBox();
  const save = h('button', { type: 'submit', class: 'btn btn-primary', text: '创建用户' });
  const form = h('form', { class: 'form-grid', id: 'user-form' }, field('用户名', username), field('姓名', name), field('角色', role), doctor.node,
    field('初始密码', password, '至少 10 位'), field('服务医院', served, '客服只看到所服务医院的工单'), problem, h('div', { class: 'form-actions' }, save));
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const body = { username: username.value.trim(), name: name.value, role: role.value, password: password.value, hospital_ids: checkedIds(served) };
    if (role.value === 'doctor' && doctor.value() !== null) body.practitioner_id = doctor.value();
    busy(save, async () => {
      await api.post('/admin/users', body);
      flash(`已创建用户：${username.value.trim()}`);
      done();
    }, problem);
  });
  return form;
}

function editUser(detail, user, all, done) {
  const ids = (user.hospitals || user.served_hospitals || user.hospital_ids || []).map((x) => (typeof x === 'object' ? x.id : x));
  const name = input({ value: user.name || '', maxLength: 64 });
  const role = select(ROLE_OPTIONS, { class: 'input', value: user.role });
  const doctor = practitionerPicker(role, user.practitioner || null, user.id);
  const active = h('input', { type: 'checkbox', checked: user.active !== false });
  const served = hospitalChecks(all, ids);
  const password = h('input', { class: 'input', type: 'password', autocomplete: 'new-password', maxLength: 256, placeholder: '不修改请留空' });
  const problem = errorBox();
  const save = h('button', { type: 'submit', class: 'btn btn-primary', text: '保存' });
  const form = h('form', { class: 'form-grid' }, field('姓名', name), field('角色', role), doctor.node, h('label', { class: 'check' }, active, h('span', { text: '账号启用' })),
    field('服务医院', served), field('重置密码', password, '至少 10 位；留空则不修改'), problem, h('div', { class: 'form-actions' }, save));
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const change = { name: name.value, role: role.value, active: active.checked, hospital_ids: checkedIds(served) };
    const chosen = doctor.value();
    if (role.value === 'doctor' && chosen !== null && chosen !== (user.practitioner && user.practitioner.id)) change.practitioner_id = chosen;
    if (password.value) change.password = password.value;
    busy(save, async () => {
      await api.put(`/admin/users/${user.id}`, change);
      flash('已保存');
      done();
    }, problem);
  });
  replace(detail, panel(`${user.name || user.username}（${user.username || ''}）`, form));
}

// -- invitations ----------------------------------------------------------------------------------------------------
function renderInvitations(container) {
  guarded(container, async () => {
    const [all, body] = await Promise.all([hospitals(), api.get('/admin/invitations')]);
    const codes = items(body, 'invitations');
    const hospital = select(all.map((x) => [x.id, x.name]), { class: 'input' });
    const role = select([['staff', '员工（报修人）'], ['agent', '客服'], ['engineer', '工程师']], { class: 'input' });
    const uses = input({ type: 'number', min: 1, max: 1000, value: '1' });
    const days = input({ type: 'number', min: 1, max: 90, value: '7' });
    const problem = errorBox();
    const made = h('div', { class: 'code-made', hidden: true });
    const save = h('button', { type: 'submit', class: 'btn btn-primary', text: '生成邀请码' });
    const form = h('form', { class: 'form-grid', id: 'invitation-form' }, field('医院', hospital), field('身份', role), field('可用次数', uses), field('有效天数', days),
      problem, h('div', { class: 'form-actions' }, save), made);
    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      busy(save, async () => {
        const answer = await api.post('/admin/invitations', { hospital_id: Number(hospital.value), role: role.value, max_uses: Number(uses.value), ttl_days: Number(days.value) });
        const code = (answer && (answer.code || (answer.invitation && answer.invitation.code))) || '';
        replace(made, h('span', { text: '新邀请码：' }), h('strong', { class: 'mono code', text: code }), h('span', { class: 'muted', text: '（员工在小程序中输入即可绑定）' }));
        made.hidden = false;
        const list = items(await api.get('/admin/invitations'), 'invitations');
        replace(tableBox, invitationTable(list));
      }, problem);
    });
    const tableBox = h('div', null, invitationTable(codes));
    replace(container, h('div', { class: 'split' }, panel('邀请码', tableBox), panel('生成邀请码', form)));
  });
}

function invitationTable(codes) {
  const hospitalName = (c) => (c.hospital && typeof c.hospital === 'object' ? c.hospital.name : c.hospital || '');
  return table(['邀请码', '医院', '身份', '已用 / 可用', '有效期至'], codes.map((c) => h('tr', null,
    h('td', { class: 'mono', text: c.code }), h('td', { text: hospitalName(c) }), h('td', { text: ROLE_LABELS[c.role] || c.role }),
    h('td', { text: `${c.uses ?? 0} / ${c.max_uses ?? 1}` }), h('td', { class: 'muted', text: fmtTime(c.expires_at) })) ), '还没有邀请码');
}

// -- knowledge base: review queue and proposals ---------------------------------------------------------------------
const KIND_LABELS = { answer: '已回答', clarify: '追问', handoff: '转人工', decline: '无法回答' };
const PROPOSAL_STATUS = { applied: '已生效（可撤回）', pending: '待审批', approved: '已批准', rejected: '已驳回' };

function renderKb(container) {
  guarded(container, async () => {
    const [queueBody, proposalBody] = await Promise.all([api.get('/admin/kb/review'), api.get('/admin/kb/proposals')]);
    const queue = items(queueBody, 'review', 'queue');
    const proposals = items(proposalBody, 'proposals');
    const queueRows = queue.map((q) => {
      const done = h('button', { type: 'button', class: 'btn btn-ghost btn-sm', text: '标记已处理' });
      done.addEventListener('click', () => busy(done, async () => { await api.post(`/admin/kb/review/${q.id}/done`); flash('已标记处理'); renderKb(container); }));
      return h('tr', { dataset: { question: String(q.id) } }, h('td', { class: 'question-cell', text: q.text || q.question || '' }),
        h('td', { text: KIND_LABELS[q.kind] || q.kind || '' }), h('td', { text: q.feedback === 'unhelpful' ? '没有帮助' : (q.feedback || '') }),
        h('td', { class: 'mono', text: q.entry_id || '' }), h('td', { text: q.confidence === null || q.confidence === undefined ? '—' : fmtPercent(q.confidence, 0) }),
        h('td', { class: 'muted nowrap', text: fmtTime(q.at || q.created_at) }), h('td', null, done));
    });
    const proposalRows = proposals.map((p) => {
      const open = p.status === 'pending' || p.status === 'applied';
      const approve = h('button', { type: 'button', class: 'btn btn-primary btn-sm', text: '批准' });
      const reject = h('button', { type: 'button', class: 'btn btn-danger btn-sm', text: p.status === 'applied' ? '撤回' : '驳回' });
      const decide = (yes, button) => busy(button, async () => { await api.post(`/admin/kb/proposals/${p.id}/decide`, { approve: yes }); flash(yes ? '已批准' : '已驳回'); renderKb(container); });
      approve.addEventListener('click', () => decide(true, approve));
      reject.addEventListener('click', () => decide(false, reject));
      const by = p.proposed_by && typeof p.proposed_by === 'object' ? p.proposed_by.name : p.proposed_by || '';
      return h('tr', { dataset: { proposal: String(p.id) } }, h('td', { text: p.kind === 'entry' ? '新条目' : '问法变体' }), h('td', { class: 'mono', text: p.entry_id }),
        h('td', { class: 'question-cell', text: p.question }), h('td', { class: 'question-cell', text: p.answer || '' }), h('td', { text: by }),
        h('td', null, badge(PROPOSAL_STATUS[p.status] || p.status, `proposal-${p.status}`)), h('td', { class: 'nowrap' }, open ? [approve, ' ', reject] : null));
    });
    replace(container,
      panel(`待审核的提问（${queue.length}）`, h('p', { class: 'muted', text: '机器人答得不好、无法回答或转人工的提问。可在工单中把客服的回复保存进知识库。' }),
        table(['提问', '结果', '反馈', '条目', '置信度', '时间', ''], queueRows, '没有待审核的提问')),
      panel('知识库建议', table(['类型', '条目', '问题', '答案', '提出人', '状态', ''], proposalRows, '没有建议')));
  });
}

// -- device import --------------------------------------------------------------------------------------------------
function renderDevices(container) {
  guarded(container, async () => {
    const all = await hospitals();
    const hospital = select(all.map((x) => [x.id, x.name]), { class: 'input' });
    const file = h('input', { type: 'file', class: 'input', accept: '.csv,.xlsx,text/csv,application/vnd.openxmlformats-officedocument.spreadsheetml.sheet' });
    const dry = h('input', { type: 'checkbox' });
    const problem = errorBox();
    const report = h('div', { class: 'import-report' });
    const send = h('button', { type: 'submit', class: 'btn btn-primary', text: '上传并导入' });
    const form = h('form', { class: 'form-grid', id: 'import-form' },
      field('医院', hospital), field('设备清单', file, 'CSV（UTF-8 / GBK）或 Excel（.xlsx），中文或英文表头；全部行成功才会导入'),
      h('label', { class: 'check' }, dry, h('span', { text: '仅检查，不导入' })), problem, h('div', { class: 'form-actions' }, send));
    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      if (!file.files.length) { problem.textContent = '请选择要导入的文件'; problem.hidden = false; return; }
      const data = new FormData();
      data.append('file', file.files[0]);
      data.append('hospital_id', hospital.value);
      if (dry.checked) data.append('dry_run', '1');
      busy(send, async () => {
        try {
          showReport(report, await api.upload('/admin/devices/import', data));
        } catch (err) {
          showReport(report, (err.details && err.details.report) || null, err.message);
          throw err;
        }
      }, problem);
    });
    replace(container, panel('导入设备', form), report);
  });
}

function showReport(box, body, failure) {
  if (!body) { replace(box); return; }
  const rows = body.rows || [];
  const shown = failure ? rows.filter((r) => (r.errors || []).length) : rows;
  const outcome = { created: '新增', updated: '更新', unchanged: '未变', error: '有误', invalid: '有误' };
  replace(box, panel(failure ? '导入未完成：没有导入任何设备' : (body.dry_run ? '检查结果（未导入）' : '导入结果'),
    h('p', { class: failure ? 'alert alert-error' : '', text: body.summary || failure || '已完成' }),
    (body.file_errors || []).length ? h('ul', { class: 'plain-list' }, body.file_errors.map((e) => h('li', { text: e }))) : null,
    (body.notes || []).length ? h('ul', { class: 'plain-list muted' }, body.notes.map((e) => h('li', { text: e }))) : null,
    shown.length ? table(['行', '系统编号', '结果', '说明'], shown.map((r) => h('tr', { class: (r.errors || []).length ? 'row-error' : '' },
      h('td', { class: 'mono', text: r.row ?? '' }), h('td', { class: 'mono', text: r.system_number || '' }),
      h('td', { text: outcome[r.outcome] || r.outcome || '' }), h('td', { text: (r.errors || []).join('；') || '' }))), '') : null));
}
