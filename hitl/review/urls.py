from django.urls import path

from hitl.review import views

app_name = "review"

urlpatterns = [
    path("", views.queue, name="queue"),
    path("next/", views.next_task, name="next"),
    path("tasks/<int:pk>/", views.task_page, name="task"),
    path("tasks/<int:pk>/claim/", views.claim, name="claim"),
    path("tasks/<int:pk>/decide/", views.decide, name="decide"),
    path("tasks/<int:pk>/release/", views.release, name="release"),
    path("tasks/<int:pk>/skip/", views.skip, name="skip"),
    path("tasks/<int:pk>/renew/", views.renew, name="renew"),
]
