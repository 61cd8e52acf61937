"""Provisioning through ChirpStack's gRPC API, as an operator's tooling would: log in as the
default admin, create an admin API key and use it for the rest (the default tenant, an
application, EU868 device profiles, gateways, ABP and OTAA devices, queued downlinks,
gateway metrics)."""

from __future__ import annotations

import datetime
import time

import grpc
from chirpstack_api import api, common


class ChirpStack:
    """A client of one ChirpStack's API on 127.0.0.1:`port`."""

    def __init__(self, port: int):
        self.channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        self.internal = api.InternalServiceStub(self.channel)
        self.tenants = api.TenantServiceStub(self.channel)
        self.applications = api.ApplicationServiceStub(self.channel)
        self.profiles = api.DeviceProfileServiceStub(self.channel)
        self.gateways = api.GatewayServiceStub(self.channel)
        self.devices = api.DeviceServiceStub(self.channel)
        self.auth: list[tuple[str, str]] = []

    def close(self) -> None:
        self.channel.close()

    def login(self, timeout: float = 60.0) -> None:
        """Log in as the admin user the database is created with (retried until the API
        answers, within `timeout`), then switch to a new admin API key."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                jwt = self.internal.Login(api.LoginRequest(email="admin", password="admin"),
                                          timeout=5).jwt
                break
            except grpc.RpcError as e:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"ChirpStack API login as admin failed: {e.code()}: "
                                       f"{e.details()}") from e
                time.sleep(0.3)
        key = self.internal.CreateApiKey(
            api.CreateApiKeyRequest(api_key=api.ApiKey(name="interop", is_admin=True)),
            metadata=[("authorization", f"Bearer {jwt}")], timeout=10)
        self.auth = [("authorization", f"Bearer {key.token}")]

    def _call(self, method, request):
        return method(request, metadata=self.auth, timeout=10)

    def default_tenant(self) -> str:
        tenants = self._call(self.tenants.List, api.ListTenantsRequest(limit=10)).result
        if not tenants:
            raise RuntimeError("ChirpStack has no tenant (the default one is created with the "
                               "database)")
        return tenants[0].id

    def create_application(self, tenant: str, name: str) -> str:
        app = api.Application(name=name, tenant_id=tenant)
        return self._call(self.applications.Create,
                          api.CreateApplicationRequest(application=app)).id

    def create_profile(self, tenant: str, name: str, otaa: bool, class_c: bool = False) -> str:
        """An EU868 LoRaWAN 1.0.3 profile; ABP sessions get the region's RX parameters so that
        ChirpStack has no RxParamSetupReq to send."""
        p = api.DeviceProfile(
            tenant_id=tenant, name=name, region=common.Region.EU868,
            mac_version=common.MacVersion.LORAWAN_1_0_3,
            reg_params_revision=common.RegParamsRevision.A,
            adr_algorithm_id="default", supports_otaa=otaa, supports_class_c=class_c,
            class_c_timeout=5, uplink_interval=3600, abp_rx1_delay=1, abp_rx1_dr_offset=0,
            abp_rx2_dr=0, abp_rx2_freq=869525000, flush_queue_on_activate=True,
        )
        return self._call(self.profiles.Create,
                          api.CreateDeviceProfileRequest(device_profile=p)).id

    def create_gateway(self, tenant: str, gateway_id: str, stats_secs: int) -> None:
        g = api.Gateway(gateway_id=gateway_id, name=f"gatewayd-{gateway_id}", tenant_id=tenant,
                        stats_interval=stats_secs, downlink_priority=10)
        self._call(self.gateways.Create, api.CreateGatewayRequest(gateway=g))

    def gateway(self, gateway_id: str) -> api.GetGatewayResponse:
        return self._call(self.gateways.Get, api.GetGatewayRequest(gateway_id=gateway_id))

    def gateway_state(self, tenant: str, gateway_id: str) -> str:
        """ONLINE, OFFLINE or NEVER_SEEN, from the gateway list."""
        items = self._call(self.gateways.List,
                           api.ListGatewaysRequest(tenant_id=tenant, limit=100)).result
        for g in items:
            if g.gateway_id == gateway_id:
                return api.GatewayState.Name(g.state)
        return "MISSING"

    def gateway_metrics(self, gateway_id: str) -> api.GetGatewayMetricsResponse:
        now = datetime.datetime.now(datetime.timezone.utc)
        req = api.GetGatewayMetricsRequest(gateway_id=gateway_id, aggregation=common.HOUR)
        req.start.FromDatetime(now - datetime.timedelta(hours=2))
        req.end.FromDatetime(now + datetime.timedelta(hours=1))
        return self._call(self.gateways.GetMetrics, req)

    def create_device(self, app: str, profile: str, dev_eui: str, name: str,
                      join_eui: str = "") -> None:
        d = api.Device(dev_eui=dev_eui, name=name, application_id=app,
                       device_profile_id=profile, join_eui=join_eui)
        self._call(self.devices.Create, api.CreateDeviceRequest(device=d))

    def activate_abp(self, dev_eui: str, dev_addr: int, nwk_s_key: bytes, app_s_key: bytes) -> None:
        a = api.DeviceActivation(
            dev_eui=dev_eui, dev_addr=f"{dev_addr:08x}", app_s_key=app_s_key.hex(),
            nwk_s_enc_key=nwk_s_key.hex(), s_nwk_s_int_key=nwk_s_key.hex(),
            f_nwk_s_int_key=nwk_s_key.hex(), f_cnt_up=0, n_f_cnt_down=0, a_f_cnt_down=0,
        )
        self._call(self.devices.Activate, api.ActivateDeviceRequest(device_activation=a))

    def set_otaa_key(self, dev_eui: str, app_key: bytes) -> None:
        """LoRaWAN 1.0.x: ChirpStack keeps the AppKey in `nwk_key`."""
        k = api.DeviceKeys(dev_eui=dev_eui, nwk_key=app_key.hex(), app_key=bytes(16).hex())
        self._call(self.devices.CreateKeys, api.CreateDeviceKeysRequest(device_keys=k))

    def enqueue(self, dev_eui: str, fport: int, data: bytes) -> str:
        item = api.DeviceQueueItem(dev_eui=dev_eui, confirmed=False, f_port=fport, data=data)
        return self._call(self.devices.Enqueue,
                          api.EnqueueDeviceQueueItemRequest(queue_item=item)).id

    def queue(self, dev_eui: str) -> list:
        return list(self._call(self.devices.GetQueue,
                               api.GetDeviceQueueItemsRequest(dev_eui=dev_eui)).result)


def metric_total(metric, label: str | None = None) -> float:
    """The sum of a metric's data points (of the dataset `label`, else of all datasets)."""
    return sum(sum(ds.data) for ds in metric.datasets if label is None or ds.label == label)
