app_name = "scheduling-api"

urlpatterns: list = []
