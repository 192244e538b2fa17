/**
 * cloud3d observer camera (part of the cloud3d toolkit's 0 A.D. recipe).
 *
 * An observer's camera stays where the match put it. This script, loaded after the
 * session's own scripts (its file name sorts last), runs on every simulation update and,
 * every `cloud3d.cameraperiod` seconds (default 15), makes the camera follow a unit picked
 * at random among a sample of the players' entities, preferring units that are busy
 * (fighting, walking, gathering, building). Each switch prints one line on stdout.
 */
var g_Cloud3dCamera = { "next": 0, "period": 15000 };

function cloud3dCameraPick()
{
	let ents = Engine.GuiInterfaceCall("GetNonGaiaEntities");
	if (!ents || !ents.length)
		return undefined;
	let busy = [];
	let units = [];
	for (let i = 0; i < Math.min(60, ents.length); ++i)
	{
		let ent = ents[Math.floor(Math.random() * ents.length)];
		let state = GetEntityState(ent);
		if (!state || !state.position || !hasClass(state, "Unit"))
			continue;
		units.push(ent);
		let order = state.unitAI && state.unitAI.state || "";
		if (/COMBAT|WALKING|GATHER|REPAIR|RETURNRESOURCE|FLEEING/.test(order))
			busy.push(ent);
	}
	let pool = busy.length ? busy : units;
	if (!pool.length)
		return undefined;
	return { "ent": pool[Math.floor(Math.random() * pool.length)], "busy": busy.length, "units": units.length };
}

function cloud3dCameraUpdate()
{
	let now = Date.now();
	if (now < g_Cloud3dCamera.next)
		return;
	g_Cloud3dCamera.next = now + g_Cloud3dCamera.period;
	let pick = cloud3dCameraPick();
	if (!pick)
		return;
	Engine.CameraFollow(pick.ent);
	print("cloud3d-camera: following entity " + pick.ent + " (" + pick.busy + " busy of " +
		pick.units + " sampled units)\n");
}

{
	let seconds = +Engine.ConfigDB_GetValue("user", "cloud3d.cameraperiod");
	if (seconds > 0)
		g_Cloud3dCamera.period = seconds * 1000;
	registerSimulationUpdateHandler(cloud3dCameraUpdate);
}
